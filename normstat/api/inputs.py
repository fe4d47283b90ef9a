"""What the library accepts, checked once at its boundary: paths, axes and in-memory data.

Every function here turns a caller's value into the one form the engine takes, or raises a
:class:`UsageError` naming the parameter and what was received (scikit-learn's ``check_array``
and Keras' ``Normalization`` do the same). pandas, polars and pyarrow are never imported here:
their objects are recognised by the module of their type, so only a caller who already has one
has paid for importing it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from normstat.errors import NormstatWarning, UsageError

if TYPE_CHECKING:
    from normstat.core.stats import Stats

NUMERIC_KINDS = "iuf"  # as file tables: integer and float columns are features, booleans are not


def describe_value(v: Any) -> str:
    """What was received, short: ``'none'``, ``ndarray of shape (3, 2)``, ``DataFrame``."""
    if isinstance(v, np.ndarray):
        return f"ndarray of shape {v.shape}"
    if isinstance(v, str | int | float | bool) or v is None:
        return repr(v)
    return type(v).__name__


def as_path(value: Any, name: str) -> str:
    """A path given as ``str`` or any ``os.PathLike`` (``pathlib.Path``), as ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        return path if isinstance(path, str) else os.fsdecode(path)
    raise UsageError(
        f"{name}: expected a path (str or os.PathLike), received {describe_value(value)}"
    )


def as_paths(value: Any, name: str, hint: str = "") -> list[str]:
    """One path or a sequence of paths, as a list of ``str``."""
    if isinstance(value, str | os.PathLike):
        return [as_path(value, name)]
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, str | os.PathLike) for v in value)
    ):
        return [as_path(v, name) for v in value]
    raise UsageError(
        f"{name}: expected a path or a sequence of paths (str or os.PathLike), received "
        f"{describe_value(value)}{hint}"
    )


def check_axis(axis: Any, name: str = "axis") -> int | tuple[int, ...] | None:
    """``axis`` as an int, a tuple of ints or None (Keras' forms); anything else names itself."""
    if axis is None:
        return None
    if isinstance(axis, int | np.integer) and not isinstance(axis, bool):
        return int(axis)
    if (
        isinstance(axis, list | tuple)
        and axis
        and all(isinstance(a, int | np.integer) and not isinstance(a, bool) for a in axis)
    ):
        return tuple(int(a) for a in axis)
    raise UsageError(
        f"{name}: expected an int, a sequence of ints or None, received {describe_value(axis)}"
    )


def check_columns(columns: Any, name: str = "columns") -> list[str] | None:
    """Column names as a list of str, or None (a lone string is refused, not split into
    letters)."""
    if columns is None:
        return None
    if (
        isinstance(columns, str)
        or not isinstance(columns, Sequence)
        or not all(isinstance(c, str) for c in columns)
    ):
        raise UsageError(
            f"{name}: expected a sequence of column names (['a', 'b']), received "
            f"{describe_value(columns)}"
        )
    return list(columns)


def check_int(value: Any, name: str, minimum: int = 0) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise UsageError(
            f"{name}: expected an integer >= {minimum}, received {describe_value(value)}"
        )
    return int(value)


def check_tol(value: Any, name: str = "constant_tol") -> float | None:
    """A non-negative finite tolerance, or None (scikit-learn's rule)."""
    if value is None:
        return None
    try:
        tol = float(value)
    except (TypeError, ValueError):
        tol = float("nan")
    if not (np.isfinite(tol) and tol >= 0) or isinstance(value, bool):
        raise UsageError(
            f"{name}: expected a non-negative number or None, received {describe_value(value)}"
        )
    return tol


# ---------------------------------------------------------------------------------------------
# in-memory data


@dataclass(frozen=True)
class Matrix:
    """In-memory data as one numeric array, with the column names of a table (else None)."""

    data: np.ndarray
    names: list[str] | None = None
    selected: list[str] | None = None
    """The columns (dotted paths into structs too) the names come from, when they differ from
    the names (a vector or tensor column is one column of many features)."""
    feature_groups: list[dict[str, Any]] | None = None
    """The artifact's ``feature_groups`` of those columns (None: scalar columns only)."""


def _module(x: Any) -> str:
    return type(x).__module__.split(".", 1)[0]


def is_table(x: Any) -> bool:
    """A pandas / polars DataFrame or a pyarrow Table / RecordBatch (by duck typing)."""
    mod = _module(x)
    if mod in ("pandas", "polars"):
        return hasattr(x, "columns") and hasattr(x, "shape") and len(getattr(x, "shape", ())) == 2
    return mod == "pyarrow" and hasattr(x, "column_names") and hasattr(x, "num_rows")


def is_dataset(x: Any) -> bool:
    """One dataset (an array-like or a table), as opposed to an iterable of batches."""
    if isinstance(x, np.ndarray) or is_table(x):
        return True
    if _module(x) in ("pandas", "polars", "pyarrow") or hasattr(x, "__array__"):
        return True  # a Series, an Arrow array, a tensor
    if isinstance(x, list | tuple):
        # A list of rows (scalars or nested Python sequences) is an array-like, as in
        # scikit-learn; a list of arrays or tables is a list of batches.
        return not x or not (isinstance(x[0], np.ndarray) or is_table(x[0]))
    return False


def _table_columns(x: Any) -> list[tuple[str, Any]]:
    mod = _module(x)
    if mod == "pyarrow":
        return [(str(n), x.column(n)) for n in x.column_names]
    return [(str(n), x[n]) for n in x.columns]


def _column_array(col: Any, mod: str) -> np.ndarray | None:
    """A numeric column as a float/int numpy array (nulls as NaN); None if not numeric."""
    if mod == "pyarrow":
        import pyarrow as pa  # already imported: the caller holds an Arrow object

        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            return None
        if pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        if col.null_count:
            return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False))
        return np.asarray(col.to_numpy())
    kind = getattr(getattr(col, "dtype", None), "kind", None)
    if mod == "polars":
        dtype = col.dtype
        if not (dtype.is_integer() or dtype.is_float() or dtype.is_decimal()):
            return None
        if col.null_count():
            return np.asarray(col.cast(float).to_numpy(), np.float64)
        return np.asarray(col.to_numpy())
    if kind not in tuple(NUMERIC_KINDS):
        return None
    if col.hasnans if hasattr(col, "hasnans") else False:
        return np.asarray(col.to_numpy(dtype="float64", na_value=np.nan))
    return np.asarray(col.to_numpy())


def as_matrix(x: Any, name: str, *, columns: Sequence[str] | None = None) -> Matrix:
    """In-memory data as a numeric array: an ndarray, a list of rows, a pandas / polars DataFrame
    or a pyarrow Table / RecordBatch (numeric columns, by name when ``columns`` is given)."""
    if is_table(x):
        return _table_matrix(x, name, columns)
    if columns is not None:
        raise UsageError(f"{name}: columns can only be chosen in a DataFrame or an Arrow table")
    try:
        data = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{name}: not an array ({exc}), received {describe_value(x)}") from None
    if data.dtype.kind not in "biuf":
        raise UsageError(
            f"{name}: expected numbers (an array, a list of rows, a DataFrame or an Arrow "
            f"table), received {describe_value(x)} of dtype {data.dtype}"
        )
    if data.ndim == 0:
        raise UsageError(f"{name}: expected at least one axis (samples), received a scalar")
    return Matrix(data)


def _table_matrix(x: Any, name: str, columns: Sequence[str] | None) -> Matrix:
    mod = _module(x)
    if mod == "pyarrow" and _nested(x.schema, columns):
        return _arrow_groups(x, name, columns)
    cols = _table_columns(x)
    by_name = dict(cols)
    if columns is not None:
        missing = [c for c in columns if c not in by_name]
        if missing:
            raise UsageError(
                f"{name}: columns {missing} are not in the table, which has {list(by_name)}"
            )
        picked = [(c, _column_array(by_name[c], mod)) for c in columns]
        bad = [c for c, a in picked if a is None]
        if bad:
            raise UsageError(f"{name}: columns {bad} are not numeric (integer or float)")
    else:
        picked = [(c, _column_array(col, mod)) for c, col in cols]
        left = [c for c, a in picked if a is None]
        picked = [(c, a) for c, a in picked if a is not None]
        if not picked:
            raise UsageError(f"{name}: the table has no numeric column (columns: {list(by_name)})")
        if left:
            warnings.warn(
                NormstatWarning(f"{name}: non-numeric columns left out: {', '.join(left)}"),
                stacklevel=4,
            )
    names = [c for c, _ in picked]
    arrays = [a for _, a in picked]
    dtype = np.result_type(*arrays) if arrays else np.float64
    data = np.empty((_rows(x), len(arrays)), dtype)
    for j, a in enumerate(arrays):
        data[:, j] = a
    return Matrix(data, names)


def _nested(schema: Any, columns: Sequence[str] | None) -> bool:
    """An Arrow table with vector / tensor columns, or a selection of struct fields by path."""
    from normstat.sources import nested

    if columns is not None and any(c not in schema.names for c in columns):
        return True
    return any(nested.is_list(f.type) for f in schema)


def _arrow_groups(x: Any, name: str, columns: Sequence[str] | None) -> Matrix:
    """An Arrow table or batch read as a table file is (:mod:`normstat.sources.table`): the same
    columns selected by default or by ``columns``, the same feature groups, the same errors
    (a row of another length is named)."""
    from normstat.sources.table import feature_columns, group_records, select_features

    selected, left_out = select_features(
        x.schema, columns, name, peek=lambda top: x.column(top) if x.num_rows else None
    )
    arrays = [a.reshape(len(a), -1) for a in feature_columns(x, selected, 0, name)]
    dtype = np.result_type(*arrays)
    data = np.concatenate(arrays, axis=1, dtype=dtype) if arrays else np.empty((x.num_rows, 0))
    if left_out and columns is None:
        why = "; ".join(f"{c} ({reason})" for c, reason in left_out)
        warnings.warn(NormstatWarning(f"{name}: columns left out: {why}"), stacklevel=4)
    names = [f for c in selected for f in c.feature_names()]
    return Matrix(data, names, [c.name for c in selected], group_records(selected))


def _rows(x: Any) -> int:
    return int(x.num_rows) if _module(x) == "pyarrow" else int(x.shape[0])


def batches_of(data: Any, name: str) -> Iterable[Any]:
    """One dataset is one batch; anything else iterable is a sequence of batches."""
    if is_dataset(data):
        return [data]
    if isinstance(data, str | os.PathLike):
        raise UsageError(
            f"{name}: expected arrays in memory, received a path {os.fspath(data)!r}; "
            f"use normstat.fit for files"
        )
    if isinstance(data, Iterable):
        return data
    raise UsageError(
        f"{name}: expected an array, a table, a list of rows or an iterable of batches, "
        f"received {describe_value(data)}"
    )


def as_stats(value: Any, name: str = "stats") -> Stats:
    """A :class:`Stats`, or the path (str or os.PathLike) of an artifact, loaded and validated."""
    from normstat.core.stats import Stats

    if isinstance(value, Stats):
        return value
    if isinstance(value, str | os.PathLike):
        from normstat import artifact

        return artifact.load(as_path(value, name))
    raise UsageError(
        f"{name}: expected normstat.Stats or the path of a statistics file, received "
        f"{describe_value(value)}"
    )


def stats_name(value: Any, default: str) -> str:
    """How errors name statistics: their path when given one."""
    return os.fspath(value) if isinstance(value, str | os.PathLike) else default
