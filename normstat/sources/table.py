"""What every table reader shares: which columns are features, and Arrow batches -> float64 rows.

A table source has the same shape as an array source (``shape = (rows, n_features)``, ``chunks``
of a ``(n, F)`` float64 matrix), so the engine, the artifact and the commands do not care where
the numbers came from; it adds ``features`` (the column names) and ``batches`` (whole record
batches, every column, for ``apply`` to pass the others through).

Decisions (see docs/tables.md): integer, floating and decimal columns are features by default;
booleans only when named in ``columns`` (as 0 / 1), because a boolean is far more often a label or
a flag than a quantity to standardise; anything else (strings, timestamps, lists) is never a
feature. Nulls become NaN, so ``--nan`` treats them as missing values and counts them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from normstat.errors import DataError, UsageError
from normstat.sources.base import Chunk
from normstat.sources.blocks import Unit, exact_batches, read_units, unit_at
from normstat.sources.reading import TableOptions

Batch: TypeAlias = pa.RecordBatch


def is_default_feature(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def is_selectable(t: pa.DataType) -> bool:
    return is_default_feature(t) or pa.types.is_boolean(t)


def _listing(schema: pa.Schema, limit: int = 40) -> str:
    """The columns with their types, for an error line (a wide table is cut short)."""
    shown = ", ".join(f"{f.name} ({f.type})" for f in list(schema)[:limit])
    return shown if len(schema) <= limit else f"{shown}, ... ({len(schema) - limit} more)"


def metadata_roles(schema: pa.Schema) -> dict[str, str]:
    """Columns the table's metadata marks as labels or an index, not quantities: name -> why.

    Hugging Face ``datasets`` writes its features under the schema metadata key ``huggingface``
    (``info.features``, or ``features`` at the top in older files); pandas lists its index
    columns under ``pandas`` (``index_columns``) and names an unnamed one ``__index_level_0__``.
    """
    roles = {f.name: "pandas index" for f in schema if re.fullmatch(r"__index_level_\d+__", f.name)}
    meta = schema.metadata or {}
    pandas = _json(meta.get(b"pandas"))
    for col in pandas.get("index_columns", []) if isinstance(pandas, dict) else []:
        if isinstance(col, str):
            roles[col] = "pandas index"
    hf = _json(meta.get(b"huggingface"))
    if isinstance(hf, dict):
        info = hf.get("info")
        for features in (
            info.get("features") if isinstance(info, dict) else None,
            hf.get("features"),
        ):
            if isinstance(features, dict):
                for name, feature in features.items():
                    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
                        roles[name] = "ClassLabel"
    return roles


def _json(raw: bytes | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _why_not(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool: name it in --columns to use it as 0 / 1"
    if pa.types.is_null(t):
        return "empty"
    return str(t)


def select_features(
    schema: pa.Schema,
    columns: Sequence[str] | None,
    path: str,
    exclude: Sequence[str] = (),
) -> tuple[list[str], list[tuple[str, str]]]:
    """The feature columns, and the columns left out with the reason: ``columns`` checked against
    the table, else every numeric column that the metadata does not mark as a label or an index,
    less ``exclude``."""
    for name in exclude:
        field_named(schema, name, path, " (--exclude)")
    if columns is not None and set(columns) & set(exclude):
        both = [c for c in columns if c in exclude]
        raise UsageError(f"--columns and --exclude both name {both}")
    if columns is None:
        return _default_features(schema, exclude, path)
    names = list(columns)
    if len(set(names)) != len(names):
        raise UsageError(f"--columns names a column twice: {names}")
    for name in names:
        t = field_named(schema, name, path).type
        if not is_selectable(t):
            what = "empty (no value in the file)" if pa.types.is_null(t) else f"{t}"
            raise DataError(
                f"column {name!r} is {what}, not numeric (integers, floats, decimals, booleans)",
                path=path,
                feature=name,
            )
    left_out = [
        (f.name, "excluded" if f.name in exclude else "not in --columns")
        for f in schema
        if f.name not in set(names)
    ]
    return names, left_out


def _default_features(
    schema: pa.Schema, exclude: Sequence[str], path: str
) -> tuple[list[str], list[tuple[str, str]]]:
    roles = metadata_roles(schema)
    names: list[str] = []
    left_out: list[tuple[str, str]] = []
    for f in schema:
        why = _reason(f, exclude, roles)
        if why is None:
            names.append(f.name)
        else:
            left_out.append((f.name, why))
    if not names:
        listing = f"; left out: {_left_out_line(left_out)}" if left_out else ""
        raise DataError(
            f"no numeric column to use; the columns are: {_listing(schema)}{listing}", path=path
        )
    return names, left_out


def _reason(f: pa.Field, exclude: Sequence[str], roles: dict[str, str]) -> str | None:
    """Why a column is not a feature by default, or None if it is one."""
    if f.name in exclude:
        return "excluded"
    if f.name in roles:
        return roles[f.name]
    return None if is_default_feature(f.type) else _why_not(f.type)


def _left_out_line(left_out: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{n} ({why})" for n, why in left_out)


def field_named(schema: pa.Schema, name: str, path: str, option: str = "") -> pa.Field:
    idx = schema.get_all_field_indices(name)
    if not idx:
        raise DataError(
            f"no column {name!r}{option}; the table's columns are: {_listing(schema)}",
            path=path,
            feature=name,
        )
    if len(idx) > 1:
        raise DataError(f"column {name!r} appears {len(idx)} times", path=path, feature=name)
    return schema.field(idx[0])


def numpy_dtype(t: pa.DataType) -> np.dtype:
    if pa.types.is_decimal(t):
        return np.dtype(np.float64)
    return np.dtype(t.to_pandas_dtype())


def column_to_float64(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One column as float64, nulls as NaN (integers above 2**53 round, as in any float64)."""
    col = _combined(col)
    if col.type != pa.float64():
        col = col.cast(pa.float64(), safe=False)
    return _with_nan(col)


def feature_columns(batch: Batch, names: Sequence[str]) -> list[np.ndarray]:
    """The named columns of ``batch`` as 1-D arrays the kernel can read (see
    :func:`column_array`)."""
    return [column_array(batch.column(name)) for name in names]


def column_array(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One feature column as a 1-D array: the Arrow buffer itself (no copy) for a null-free
    integer or float column; otherwise a float copy with NaN for nulls (float32 stays float32),
    and decimals and booleans as float64."""
    col = _combined(col)
    t = col.type
    if col.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return _values(col)
    if t == pa.float32():
        return _with_nan(col)
    return column_to_float64(col)


def _values(col: pa.Array) -> np.ndarray:
    """The values buffer of a fixed-width numeric array, as numpy, without a copy.

    Not ``Array.to_numpy``: its first call imports pandas (0.3-0.5 s of a CLI fit's start,
    ``python -X importtime``), which nothing here needs."""
    dtype = np.dtype(col.type.to_pandas_dtype())
    buf = col.buffers()[1]
    if buf is None or len(col) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(buf, dtype, count=col.offset + len(col))[col.offset :]


def _with_nan(col: pa.Array) -> np.ndarray:
    """A float array's values, copied with NaN where they are null (as they are if not)."""
    values = _values(col)
    if col.null_count == 0:
        return values
    bits = np.frombuffer(col.buffers()[0], np.uint8)
    valid = np.unpackbits(bits, bitorder="little")[col.offset : col.offset + len(col)]
    out = values.copy()
    out[valid == 0] = np.nan
    return out


def _combined(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (``combine_chunks`` copies even a single chunk)."""
    if not isinstance(col, pa.ChunkedArray):
        return col
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def sliced(batches: Iterator[Batch], rows: int) -> Iterator[Batch]:
    """Cut batches longer than ``rows`` (zero-copy slices), so chunks stay within budget."""
    for b in batches:
        for start in range(0, b.num_rows, rows):
            yield b.slice(start, rows)


_SELECTED: dict[tuple[Any, ...], tuple[Any, ...]] = {}
"""Feature selections by (schema, columns, exclude): the shards of one dataset share a schema,
and selecting again for each of 10,000 shards cost 0.6 ms a file (docs/decisions.md). Only a
successful selection is kept (an error names its file)."""
_SELECTED_MAX = 64


class TableSource:
    """Base of the table readers; a subclass sets ``format`` and implements :meth:`_read`."""

    kind = "table"
    dataset = None
    format = "table"

    def _setup(
        self,
        path: str,
        schema: pa.Schema,
        columns: Sequence[str] | None,
        rows: int | None,
        options: TableOptions | None = None,
    ) -> None:
        self.path = path
        self.schema = schema
        self.options = options or TableOptions()
        meta = tuple(sorted((schema.metadata or {}).items()))  # == on schemas ignores it
        names = None if columns is None else tuple(columns)
        key = (schema, meta, names, tuple(self.options.exclude))
        known = _SELECTED.get(key)
        if known is None:
            features, left_out = select_features(schema, columns, path, self.options.exclude)
            types = [numpy_dtype(schema.field(n).type) for n in features]
            feature_types = [str(schema.field(n).type) for n in features]
            known = (features, left_out, feature_types, np.result_type(*types))
            if len(_SELECTED) >= _SELECTED_MAX:
                _SELECTED.clear()
            _SELECTED[key] = known
        features, left_out, feature_types, self.dtype = known
        self.features, self.left_out = list(features), list(left_out)
        self.feature_types = list(feature_types)
        self.promoted: list[dict[str, Any]] = []
        self.shape: tuple[int | None, int] = (rows, len(self.features))

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        """The whole table from its first row (sources without :meth:`storage_blocks`)."""
        raise NotImplementedError

    def storage_blocks(self) -> list[int] | None:
        """Rows of each block that can be read without the rows before it (Parquet row groups,
        Arrow IPC record batches); ``None`` when rows can only be read from the start."""
        return None

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None
    ) -> Iterator[Batch]:
        """Storage blocks ``lo:hi`` (sources with :meth:`storage_blocks`)."""
        raise NotImplementedError

    def read_units(self, rows: int) -> list[Unit] | None:
        """How the table is read in chunks of ``rows`` (see :mod:`normstat.sources.blocks`);
        ``None`` for a source read from the start only (CSV, streams)."""
        blocks = self.storage_blocks()
        return None if blocks is None else read_units(blocks, rows)

    def _release(self) -> None:
        """Called once a batch has been used: a memory-mapped reader drops its pages here."""

    def preferred_rows(self, target_bytes: int) -> int:
        """Rows whose feature columns, as decoded, take ``target_bytes``: a chunk lives as its
        Arrow batch, which the kernel reads in place (a column with nulls gets one float copy).
        Bigger batches also decode faster: pyarrow's cost per batch is per column, not per row."""
        return max(1, target_bytes // self._feature_row_bytes())

    def transform_rows(self, target_bytes: int) -> int:
        """Rows per batch for ``apply``: a quarter of the above, since a batch lives as Arrow
        input (every column, not only the features), as its transformed copy, and in the
        writer's row group while the next ones are read and transformed."""
        return max(1, target_bytes // (4 * self._feature_row_bytes()))

    def _feature_row_bytes(self) -> int:
        types = (numpy_dtype(self.schema.field(n).type) for n in self.features)
        return max(1, sum(t.itemsize for t in types))

    def first_row(self, rows: int, start: int) -> int:
        """The row where reading for row ``start`` begins: the start of the read unit that
        holds it (row 0 for a source without units)."""
        units = self.read_units(rows)
        if units is None:
            return 0
        i = unit_at(units, start)
        return units[i].start if i < len(units) else start

    def batches(
        self, rows: int, columns: list[str] | None = None, start: int = 0
    ) -> Iterator[Batch]:
        """Record batches of at most ``rows`` rows (every column unless ``columns`` is given)
        from :meth:`first_row` of ``start``; once all are read from row 0, ``shape[0]`` is known
        even for a CSV or a stream."""
        begin = self.first_row(rows, start)
        seen = begin
        try:
            for b in self._from(rows, columns, begin):
                seen += b.num_rows
                yield b
                self._release()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"cannot read past row {seen}: {one_line(exc)}", path=self.path
            ) from None
        if begin == 0:
            self.shape = (seen, self.shape[1])

    def _from(self, rows: int, columns: list[str] | None, begin: int) -> Iterator[Batch]:
        units = self.read_units(rows)
        if units is None:
            yield from sliced(self._read(rows, columns), rows)
            return
        for u in units[unit_at(units, begin) :]:
            yield from exact_batches(self._read_blocks(u.lo, u.hi, rows, columns), rows)

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Feature matrices of at most ``rows`` rows, rows ``start`` to ``stop``. Parquet and
        Arrow files start reading at the row group / record batch that holds ``start``; CSV and
        streams read the rows before ``start`` again, but do not convert or compute them."""
        at = self.first_row(rows, start)
        for b in self.batches(rows, self.features, start):
            if stop is not None and at + b.num_rows > stop:
                b = b.slice(0, max(stop - at, 0))
            if at + b.num_rows <= start:
                at += b.num_rows
            else:
                if at < start:
                    b, at = b.slice(start - at), start
                yield Chunk.of_columns(feature_columns(b, self.features), self.path, None, at)
                at += b.num_rows
            if stop is not None and at >= stop:
                return

    def count_rows(self) -> int:
        """Rows of the table, counting them with a pass over one column if need be."""
        if self.shape[0] is None:
            for _ in self.batches(1 << 20, self.features[:1]):
                pass
        assert self.shape[0] is not None
        return self.shape[0]

    def close(self) -> None:
        pass


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def read_once(
    reader: Iterator[Batch] | None, columns: list[str] | None, path: str
) -> Iterator[Batch]:
    """The batches of a one-pass reader (stdin); a second read is an error, not silence."""
    if reader is None:
        raise DataError("a stream can be read only once", path=path)
    for b in reader:
        yield b if columns is None else b.select(columns)


def arrow_error(exc: BaseException, what: str, path: str) -> DataError:
    return DataError(f"not a readable {what} ({one_line(exc)})", path=path)


def disagreement(first: TableSource, other: TableSource) -> str | None:
    """Why shard ``other`` cannot continue ``first``: the first column that differs, or None."""
    a = list(zip(first.features, first.feature_types, strict=True))
    b = list(zip(other.features, other.feature_types, strict=True))
    for (na, ta), (nb, tb) in zip(a, b, strict=False):
        if na != nb:
            return f"has column {nb!r} where the first shard {first.path} has {na!r}"
        if ta != tb and _widened(ta, tb) is None:
            return f"column {na!r} is {tb}, but {ta} in the first shard {first.path}"
    if len(a) != len(b):
        return f"has {len(b)} feature columns, the first shard {first.path} has {len(a)}"
    return None


def _widened(a: str, b: str) -> str | None:
    """The type both ``a`` and ``b`` fit in, within numbers: the wider integer or float, float64
    for an integer and a float; None for other pairs (a decimal, a boolean, a string)."""
    try:
        ta, tb = pa.type_for_alias(a), pa.type_for_alias(b)
    except ValueError:  # a decimal: no alias, and never widened
        return None
    ints = pa.types.is_integer(ta) and pa.types.is_integer(tb)
    floats = pa.types.is_floating(ta) and pa.types.is_floating(tb)
    if ints or floats:
        return a if ta.bit_width >= tb.bit_width else b
    if {_family(ta), _family(tb)} == {"int", "float"}:
        return "double"
    return None


def _family(t: pa.DataType) -> str:
    return "int" if pa.types.is_integer(t) else "float" if pa.types.is_floating(t) else "other"


def promote_shards(shards: Sequence[TableSource]) -> None:
    """Give every shard the widest type of each feature column, and note each promotion on the
    first shard (``promoted``: name, the types seen, the type used) for the report."""
    first = shards[0]
    promoted = []
    for j, name in enumerate(first.features):
        seen = list(dict.fromkeys(s.feature_types[j] for s in shards))
        if len(seen) == 1:
            continue
        to = seen[0]
        for t in seen[1:]:
            to = _widened(to, t) or to
        for s in shards:
            s.feature_types[j] = to
        promoted.append({"name": name, "types": seen, "to": to})
    first.promoted = promoted
