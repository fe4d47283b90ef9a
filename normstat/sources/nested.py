"""Nested Arrow columns as feature groups: vectors and tensors per row -> ``(rows, k)`` matrices.

Datasets written by Hugging Face ``datasets`` and LeRobot store a vector per row as
``fixed_size_list<float>[k]`` (``Sequence(float32, length=k)``), a tensor as nested lists (HF
``Array2D``...``Array5D``, whose extension type is only known to ``datasets``) or as Arrow's
``fixed_shape_tensor``, and groups of columns as structs. Each such column is one *group* of
``prod(shape)`` features, flattened in row-major order.

The values of a list column are one contiguous buffer: with one length ``k`` per row it is
already the ``(rows, k)`` matrix, so it is reshaped, never looped over (a view of the Arrow
buffer when the column has no nulls). A row of another length is an error naming the row; a
null row, or a null element, becomes NaN, so ``--nan`` decides about it as for a scalar column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from normstat.errors import DataError

LEROBOT_INDEX = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""Columns every LeRobot dataset has (its ``DEFAULT_FEATURES``): time and indices, not
quantities to standardise; left out by default in a table that has ``episode_index`` and
``frame_index`` (see docs/tables.md)."""


@dataclass(frozen=True)
class Column:
    """One selected column: a top-level column, or a struct field by dotted ``path``, with the
    ``shape`` of its value per row (``()`` for a scalar) and its element type."""

    name: str
    path: tuple[str, ...]
    shape: tuple[int, ...]
    element: pa.DataType

    @property
    def top(self) -> str:
        return self.path[0]

    @property
    def width(self) -> int:
        return math.prod(self.shape)

    @property
    def nested(self) -> bool:
        return self.shape != ()

    def feature_names(self) -> list[str]:
        """``name`` for a scalar; ``name[i]`` (``name[i,j]`` for a tensor) per element."""
        if not self.nested:
            return [self.name]
        idx = np.indices(self.shape).reshape(len(self.shape), -1).T
        return [f"{self.name}[{','.join(map(str, i))}]" for i in idx]


def resolve(schema: pa.Schema, name: str) -> tuple[tuple[str, ...], pa.Field] | None:
    """The column ``name`` names: a top-level column of that exact name (LeRobot names columns
    ``observation.state``), else a field of a struct column by dotted path; None if neither."""
    if name in schema.names:
        return (name,), schema.field(name)
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        top = ".".join(parts[:cut])
        if top not in schema.names:
            continue
        found = _struct_path(schema.field(top), parts[cut:])
        if found is not None:
            return (top, *found[0]), found[1]
    return None


def _struct_path(f: pa.Field, rest: list[str]) -> tuple[tuple[str, ...], pa.Field] | None:
    if not rest:
        return (), f
    if not pa.types.is_struct(f.type):
        return None
    for cut in range(len(rest), 0, -1):
        key = ".".join(rest[:cut])
        i = f.type.get_field_index(key)
        if i >= 0:
            found = _struct_path(f.type.field(i), rest[cut:])
            if found is not None:
                return (key, *found[0]), found[1]
    return None


def storage(t: pa.DataType) -> pa.DataType:
    """An extension type's storage (``fixed_shape_tensor``: a fixed-size list)."""
    return t.storage_type if isinstance(t, pa.BaseExtensionType) else t


def is_list(t: pa.DataType) -> bool:
    t = storage(t)
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def element_type(t: pa.DataType) -> pa.DataType:
    """The scalar type under every level of lists."""
    t = storage(t)
    while is_list(t):
        t = storage(storage(t).value_type)
    return t


def list_depth(t: pa.DataType) -> int:
    """Levels of lists above the scalar elements."""
    depth = 0
    while is_list(t):
        t = storage(t).value_type
        depth += 1
    return depth


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The Hugging Face ``datasets`` features of a table (name -> feature), from its schema's
    ``huggingface`` metadata (``info.features``, or ``features`` in older files), if any."""
    try:
        hf = json.loads((schema.metadata or {}).get(b"huggingface") or b"null")
    except ValueError:
        return {}
    if not isinstance(hf, dict):
        return {}
    info = hf.get("info")
    for features in (info.get("features") if isinstance(info, dict) else None, hf.get("features")):
        if isinstance(features, dict):
            return features
    return {}


def declared_shape(f: pa.Field, hf: dict[str, Any] | None) -> tuple[int, ...] | None:
    """The shape of a list column's value per row when the file declares it: Arrow's
    ``fixed_shape_tensor``, fixed sizes at every level, or the Hugging Face features (``Array2D``
    ``shape``, ``Sequence`` ``length``); None when only reading the rows can tell."""
    t = f.type
    if isinstance(t, pa.FixedShapeTensorType):
        return (
            tuple(int(d) for d in t.shape)
            if list(t.permutation or [])
            in (
                [],
                list(range(len(t.shape))),
            )
            else None
        )
    shape = _fixed_sizes(storage(t))
    if shape is not None:
        return shape
    ext = _extension_shape(f)
    return ext if ext is not None else _hf_shape(hf)


def _fixed_sizes(t: pa.DataType) -> tuple[int, ...] | None:
    shape: list[int] = []
    while is_list(t):
        t = storage(t)
        if not pa.types.is_fixed_size_list(t):
            return None
        shape.append(t.list_size)
        t = t.value_type
    return tuple(shape)


def _extension_shape(f: pa.Field) -> tuple[int, ...] | None:
    """HF ``ArrayND`` columns read without ``datasets``: nested lists, the extension's name and
    its shape in the field metadata (``ARROW:extension:*``)."""
    meta = f.metadata or {}
    name = meta.get(b"ARROW:extension:name", b"").decode("utf-8", "replace")
    if not name.startswith("datasets.features") or "Array" not in name:
        return None
    try:
        doc = json.loads(meta.get(b"ARROW:extension:metadata", b"{}"))
    except ValueError:
        return None
    # datasets writes [shape, dtype]; a dict with "shape" is accepted as well
    shape = doc.get("shape") if isinstance(doc, dict) else doc[0] if doc else None
    return _int_shape(shape)


def _hf_shape(feature: Any) -> tuple[int, ...] | None:
    if not isinstance(feature, dict):
        return None
    kind = feature.get("_type")
    if isinstance(kind, str) and kind.startswith("Array") and kind[5:6].isdigit():
        return _int_shape(feature.get("shape"))
    if kind in ("Sequence", "List") and isinstance(feature.get("length"), int):
        inner = feature.get("feature")
        n = int(feature["length"])
        if n < 0:
            return None
        if isinstance(inner, dict) and inner.get("_type") == "Value":
            return (n,)
        sub = _hf_shape(inner)
        return None if sub is None else (n, *sub)
    return None


def _int_shape(shape: Any) -> tuple[int, ...] | None:
    if isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape):
        return tuple(shape)
    return None


def observed_shape(col: pa.Array, depth: int) -> tuple[int, ...] | None:
    """The shape of the first non-null row of a list column of ``depth`` levels (its other rows
    are checked against it while reading); None if the column holds no non-null row."""
    shape: list[int] = []
    arr: pa.Array = col
    for _ in range(depth):
        arr = _storage_array(arr)
        valid = np.flatnonzero(~_nulls(arr))
        if valid.size == 0:
            return None
        first = arr[int(valid[0])].values
        shape.append(len(first))
        arr = first
    return tuple(shape)


def dense(col: pa.Array, column: Column, start: int, path: str) -> np.ndarray:
    """The column as a ``(rows, width)`` matrix: the values buffer itself when the column has no
    null; else a float copy, NaN where a row or an element is null. ``start``: the first row's
    position, to name a row of another shape."""
    arr = field_of(col, column.path[1:])
    if not column.nested:
        raise AssertionError("dense() takes nested columns")
    # a tensor stored flat (``fixed_shape_tensor``: one fixed-size list of prod(shape)) is
    # walked by its storage's levels; the values are in row-major order either way
    levels = _fixed_sizes(storage(arr.type)) or column.shape
    return _level(arr, levels, column, start, path, np.arange(0))


def field_of(arr: pa.Array, path: tuple[str, ...]) -> pa.Array:
    """A struct field by path, nulls of the parents carried down (``struct_field`` does).
    ``pyarrow.compute`` is imported here, not at the top: it is a tenth of a CLI fit's start
    (``python -X importtime``), and only struct fields need it."""
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    for key in path:
        arr = pc.struct_field(arr, [key])
    return arr


def _storage_array(arr: pa.Array) -> pa.Array:
    return arr.storage if isinstance(arr, pa.ExtensionArray) else arr


def _nulls(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), bool)
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)


def _level(
    arr: pa.Array,
    shape: tuple[int, ...],
    column: Column,
    start: int,
    path: str,
    rows_of: np.ndarray,
) -> np.ndarray:
    """One level of lists: ``arr`` (``n`` rows of ``shape``) -> ``(n, prod(shape))``.
    ``rows_of`` maps an element of this level to its table row (empty at the top level)."""
    arr = _storage_array(arr)
    n, k, inner = len(arr), shape[0], shape[1:]
    nulls = _nulls(arr)
    if pa.types.is_fixed_size_list(arr.type):
        if arr.type.list_size != k:
            _wrong(column, start, rows_of, 0, arr.type.list_size, path)
        child = arr.values.slice(arr.offset * k, n * k)
    else:
        offsets = arr.offsets.to_numpy()
        lengths = np.diff(offsets)
        bad = np.flatnonzero((lengths != k) & ~nulls)
        if bad.size:
            _wrong(column, start, rows_of, int(bad[0]), int(lengths[bad[0]]), path)
        child = arr.flatten() if nulls.any() else arr.values.slice(offsets[0], n * k)
    valid = np.flatnonzero(~nulls)
    child_rows = np.arange(n) if rows_of.size == 0 else rows_of
    if not pa.types.is_fixed_size_list(arr.type) and nulls.any():
        child_rows = child_rows[valid]
    child_rows = np.repeat(child_rows, k)
    flat = (
        _level(child, inner, column, start, path, child_rows)
        if inner
        else _values(child, column, path)
    )
    width = math.prod(shape)
    if pa.types.is_fixed_size_list(arr.type) or not nulls.any():
        out = flat.reshape(n, width)
        if nulls.any():
            out = out.astype(np.float64) if out.dtype != np.float32 else out.copy()
            out[nulls] = np.nan
        return out
    out = np.full((n, width), np.nan, np.float32 if flat.dtype == np.float32 else np.float64)
    out[valid] = flat.reshape(-1, width)
    return out


def _values(child: pa.Array, column: Column, path: str) -> np.ndarray:
    """The leaf values: the buffer itself for a null-free integer or float array."""
    t = child.type
    if child.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return child.to_numpy(zero_copy_only=True)
    if t == pa.float32():
        return child.to_numpy(zero_copy_only=False)
    try:
        return child.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    except pa.ArrowException as exc:
        raise DataError(
            f"column {column.name!r}: elements of type {t} are not numbers ({exc})",
            path=path,
            feature=column.name,
        ) from None


def _wrong(column: Column, start: int, rows_of: np.ndarray, i: int, got: int, path: str) -> None:
    row = start + (int(rows_of[i]) if rows_of.size else i)
    raise DataError(
        f"column {column.name!r}: row {row} holds a value of another shape (a list of {got} "
        f"where the group has shape {list(column.shape)}); every row of a feature group must "
        "have one shape",
        path=path,
        feature=column.name,
        row=row,
    )
