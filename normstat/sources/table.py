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
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from normstat import storage
from normstat.arrowbuf import values, with_nan
from normstat.errors import DataError, UsageError
from normstat.sources import nested
from normstat.sources.base import Chunk
from normstat.sources.blocks import Unit, exact_batches, read_units, unit_at
from normstat.sources.reading import TableOptions

Batch: TypeAlias = pa.RecordBatch
Column: TypeAlias = nested.Column
Peek: TypeAlias = Callable[[str], "pa.Array | None"]


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
    peek: Peek | None = None,
) -> tuple[list[Column], list[tuple[str, str]]]:
    """The feature columns, and the columns left out with the reason: ``columns`` checked against
    the table (dotted paths reach into structs), else every numeric column, vector or tensor
    that the metadata does not mark as a label or an index, less ``exclude``. ``peek`` reads the
    first rows of a column, for a list column whose length per row the file does not declare."""
    for name in exclude:
        field_named(schema, name, path, " (--exclude)")
    if columns is not None and set(columns) & set(exclude):
        both = [c for c in columns if c in exclude]
        raise UsageError(f"--columns and --exclude both name {both}")
    if columns is None:
        return _default_features(schema, exclude, path, peek)
    names = list(columns)
    if len(set(names)) != len(names):
        raise UsageError(f"--columns names a column twice: {names}")
    chosen = [_chosen(schema, name, path, peek) for name in names]
    tops = {c.top for c in chosen}
    left_out = [
        (f.name, "excluded" if f.name in exclude else "not in --columns")
        for f in schema
        if f.name not in tops
    ]
    return chosen, left_out


def _chosen(schema: pa.Schema, name: str, path: str, peek: Peek | None) -> Column:
    """The column ``--columns`` names (a dotted path into a struct too), checked."""
    found = nested.resolve(schema, name)
    if found is None:
        field_named(schema, name, path)  # the error that lists the columns
        raise AssertionError
    where, f = found
    if len(where) == 1:
        field_named(schema, name, path)  # a name given twice in the file
    t = f.type
    if nested.is_list(t):
        return _group(schema, name, where, f, path, peek)
    if not is_selectable(t):
        what = "empty (no value in the file)" if pa.types.is_null(t) else f"{t}"
        raise DataError(
            f"column {name!r} is {what}, not numeric (integers, floats, decimals, booleans, or "
            "lists of them of one length per row)",
            path=path,
            feature=name,
        )
    return nested.Column(name, where, (), t)


def _group(
    schema: pa.Schema,
    name: str,
    where: tuple[str, ...],
    f: pa.Field,
    path: str,
    peek: Peek | None,
) -> Column:
    """A list / tensor column as a feature group, its shape declared by the file or read from
    its first non-null row (then every other row is checked against it)."""
    element = nested.element_type(f.type)
    if not is_selectable(element):
        raise DataError(
            f"column {name!r} is {f.type}: its elements are not numbers", path=path, feature=name
        )
    shape = nested.declared_shape(f, nested.hf_features(schema).get(name))
    if shape is None:
        first = None if peek is None else peek(where[0])
        if first is not None:
            first = nested.field_of(first, where[1:])
        depth = nested.list_depth(f.type)
        shape = None if first is None else nested.observed_shape(first, depth)
        if shape is None:
            raise DataError(
                f"column {name!r} is {f.type}: its length per row is not declared and no row "
                "to read it from was found (a stream cannot be read twice)",
                path=path,
                feature=name,
            )
    if 0 in shape:
        raise DataError(
            f"column {name!r} has shape {list(shape)} per row (its first row holds an empty "
            "list): no feature",
            path=path,
            feature=name,
        )
    return nested.Column(name, where, shape, element)


def _default_features(
    schema: pa.Schema, exclude: Sequence[str], path: str, peek: Peek | None
) -> tuple[list[Column], list[tuple[str, str]]]:
    roles = metadata_roles(schema)
    if {"episode_index", "frame_index"} <= set(schema.names):
        for name in nested.LEROBOT_INDEX:
            roles.setdefault(name, "LeRobot index column: name it in --columns to fit it")
    hf = nested.hf_features(schema)
    chosen: list[Column] = []
    left_out: list[tuple[str, str]] = []
    for f in schema:
        why = _reason(f, exclude, roles)
        if why is None and nested.is_list(f.type):
            why = _default_group(schema, f, hf, path, chosen)
        elif why is None:
            chosen.append(nested.Column(f.name, (f.name,), (), f.type))
        if why is not None:
            left_out.append((f.name, why))
    if not chosen:
        listing = f"; left out: {_left_out_line(left_out)}" if left_out else ""
        raise DataError(
            f"no numeric column to use; the columns are: {_listing(schema)}{listing}", path=path
        )
    return chosen, left_out


def _default_group(
    schema: pa.Schema, f: pa.Field, hf: dict[str, Any], path: str, chosen: list[Column]
) -> str | None:
    """A list column is a default feature group when its elements are numbers and the file
    declares its shape (a fixed-size list or tensor, HF ``Array``/``Sequence(length=k)``): a
    plain ``list`` of varying length (token ids) is left out, said why."""
    element = nested.element_type(f.type)
    if not is_default_feature(element):
        return f"{f.type}: elements are not numbers"
    shape = nested.declared_shape(f, hf.get(f.name))
    if shape is None:
        return f"{f.type} of undeclared length: name it in --columns if every row has one length"
    if 0 in shape:
        return f"{f.type}: empty lists"
    chosen.append(nested.Column(f.name, (f.name,), shape, element))
    return None


def _reason(f: pa.Field, exclude: Sequence[str], roles: dict[str, str]) -> str | None:
    """Why a column is not a feature by default, or None if it is one (a list column: maybe)."""
    if f.name in exclude:
        return "excluded"
    if f.name in roles:
        return roles[f.name]
    if nested.is_list(f.type):
        return None
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
    return with_nan(col)


def feature_columns(
    batch: Batch, selected: Sequence[Column | str], start: int = 0, path: str = ""
) -> list[np.ndarray]:
    """The selected columns of ``batch`` (or columns by name) as arrays the kernel can read:
    1-D for a scalar column (see :func:`column_array`), ``(rows, width)`` for a feature group
    (see :func:`normstat.sources.nested.dense`); ``start`` names the rows in errors."""
    return [
        column_array(batch.column(c))
        if isinstance(c, str)
        else selected_array(batch.column(c.top), c, start, path)
        for c in selected
    ]


def selected_array(
    col: pa.Array | pa.ChunkedArray, c: Column, start: int = 0, path: str = ""
) -> np.ndarray:
    """One selected column of a batch (its top-level column ``col``) as the kernel reads it."""
    if c.nested:
        return nested.dense(_combined(col), c, start, path)
    if len(c.path) > 1:
        col = nested.field_of(_combined(col), c.path[1:])
    return column_array(col)


def column_array(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One feature column as a 1-D array: the Arrow buffer itself (no copy) for a null-free
    integer or float column; otherwise a float copy with NaN for nulls (float32 stays float32),
    and decimals and booleans as float64."""
    col = _combined(col)
    t = col.type
    if col.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return values(col)
    if t == pa.float32():
        return with_nan(col)
    return column_to_float64(col)


def grouped_column(col: pa.Array | pa.ChunkedArray, c: Column, start: int) -> np.ndarray:
    """A top-level column as ``apply`` rewrites it: a feature group as its ``(rows, k)``
    matrix, a scalar column as its values; a struct field is refused (rewriting one field of
    a struct is not done: write an array output instead)."""
    if len(c.path) > 1:
        raise DataError(
            f"apply writes a table's feature columns back in place, but {c.name!r} is a field of "
            f"the struct column {c.top!r}: write an array output (.npy, .h5, .zarr) instead",
            feature=c.name,
        )
    return selected_array(col, c, start)


def _has_lists(schema: pa.Schema) -> bool:
    """Whether a column of ``schema`` is a variable-length list (at any depth of structs)."""

    def has(t: pa.DataType) -> bool:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return True
        if pa.types.is_struct(t):
            return any(has(t.field(i).type) for i in range(t.num_fields))
        return False

    return any(has(f.type) for f in schema)


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
"""Feature selections by (schema, columns, exclude, extras) and what follows from them: the
shards of one dataset share a schema, and selecting again for each of 10,000 shards cost 0.6 ms
a file (docs/decisions.md). Only a successful selection is kept (an error names its file)."""
_SELECTED_MAX = 64
_LAST: list[Any] = [None, None, None]
"""The last selection used, as (schema, how, selection): the next shard is compared with
``Schema.equals`` (0.3 us for 64 columns) before the dictionary, whose key hashes the schema
in Python (40 us)."""


def _known_selection(schema: pa.Schema, how: tuple[Any, ...]) -> tuple[Any, ...] | None:
    last, last_how, known = _LAST
    if last is not None and last_how == how and schema.equals(last, check_metadata=True):
        return known
    meta = tuple(sorted((schema.metadata or {}).items()))  # == on schemas ignores it
    known = _SELECTED.get((schema, meta, how))
    if known is not None:
        _LAST[:] = [schema, how, known]
    return known


def _keep_selection(schema: pa.Schema, how: tuple[Any, ...], known: tuple[Any, ...]) -> None:
    if len(_SELECTED) >= _SELECTED_MAX:
        _SELECTED.clear()
    meta = tuple(sorted((schema.metadata or {}).items()))
    _SELECTED[(schema, meta, how)] = known
    _LAST[:] = [schema, how, known]


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
        names = None if columns is None else tuple(columns)
        how = (names, tuple(self.options.exclude), self.options.extras)
        known = _known_selection(schema, how)
        if known is None:
            known = self._select(schema, columns)
            # a list column's length is read from the file's first rows: not shared
            if not _has_lists(schema):
                _keep_selection(schema, how, known)
        else:
            for role, name in self.options.extras:  # names this file in the message
                check_extra(schema, role, name, path)
        selected, left_out, read_columns, features, groups, types, self.dtype, plain = known
        self.plain_float: pa.DataType | None = plain
        self.selected, self.left_out = list(selected), list(left_out)
        # copies: a shard's types may be promoted, and the cached entry must not follow
        self.read_columns, self.features = list(read_columns), list(features)
        self.feature_groups, self.feature_types = groups, list(types)
        self.promoted: list[dict[str, Any]] = []
        self.shape: tuple[int | None, int] = (rows, len(self.features))

    def _select(self, schema: pa.Schema, columns: Sequence[str] | None) -> tuple[Any, ...]:
        """The feature selection of ``schema`` and what follows from it alone (names, types,
        the read columns), computed once for all the shards that share the schema."""
        known = select_features(schema, columns, self.path, self.options.exclude, self._peek)
        self.selected, self.left_out = list(known[0]), list(known[1])
        self._set_aside(columns)
        types = [numpy_dtype(c.element) for c in self.selected]
        first = schema.field(self.selected[0].top).type
        plain = (pa.types.is_float32(first) or pa.types.is_float64(first)) and all(
            not c.nested and len(c.path) == 1 and schema.field(c.top).type == first
            for c in self.selected
        )
        return (
            tuple(self.selected),
            tuple(self.left_out),
            list(dict.fromkeys(c.top for c in self.selected)),
            [n for c in self.selected for n in c.feature_names()],
            group_records(self.selected),
            [
                str(schema.field(c.top).type if len(c.path) == 1 else c.element)
                for c in self.selected
                for _ in range(c.width)
            ],
            np.result_type(*types),
            first if plain else None,
        )

    def _set_aside(self, columns: Sequence[str] | None) -> None:
        """The ``--by`` / ``--weights`` columns: checked, and never features (a default feature
        becomes a column left out, with the reason; one named in ``columns`` is an error)."""
        for role, name in self.options.extras:
            check_extra(self.schema, role, name, self.path)
            if not any(c.name == name for c in self.selected):
                continue
            if columns is not None:
                raise UsageError(f"--{role} column {name!r} is also named in --columns")
            self.selected = [c for c in self.selected if c.name != name]
            self.left_out.append((name, f"the --{role} column"))
        if not self.selected:
            raise DataError("no feature column is left beside --by / --weights", path=self.path)

    def _peek(self, top: str) -> pa.Array | None:
        """The first rows of column ``top`` (to read the length of a list column), or None for a
        source that cannot be read twice."""
        if self.storage_blocks() is None:
            return None
        for b in self._read_blocks(0, 1, 1024, [top]):
            if b.num_rows:
                return _combined(b.column(0))
        return None

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        """The whole table from its first row (sources without :meth:`storage_blocks`)."""
        raise NotImplementedError

    def storage_blocks(self) -> list[int] | None:
        """Rows of each block that can be read without the rows before it (Parquet row groups,
        Arrow IPC record batches); ``None`` when rows can only be read from the start."""
        return None

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None, threads: bool = True
    ) -> Iterator[Batch]:
        """Storage blocks ``lo:hi`` (sources with :meth:`storage_blocks`); ``threads``: see
        :meth:`batches`."""
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
        return max(1, sum(numpy_dtype(c.element).itemsize * c.width for c in self.selected))

    def first_row(self, rows: int, start: int) -> int:
        """The row where reading for row ``start`` begins: the start of the read unit that
        holds it (row 0 for a source without units)."""
        units = self.read_units(rows)
        if units is None:
            return 0
        i = unit_at(units, start)
        return units[i].start if i < len(units) else start

    column_reads = False
    """Reading some columns costs only those columns (a columnar file with storage blocks):
    ``apply`` then reads and transforms a table's columns in parts, a thread each
    (:mod:`normstat.engine.columns`)."""

    def batches(
        self, rows: int, columns: list[str] | None = None, start: int = 0, threads: bool = True
    ) -> Iterator[Batch]:
        """Record batches of at most ``rows`` rows (every column unless ``columns`` is given)
        from :meth:`first_row` of ``start``; once all are read from row 0, ``shape[0]`` is known
        even for a CSV or a stream. ``threads=False``: decoded by the calling thread alone, with
        a reader of its own (the caller reads other columns on other threads at once)."""
        begin = self.first_row(rows, start)
        seen = begin
        try:
            for b in self._from(rows, columns, begin, threads):
                seen += b.num_rows
                yield b
                self._release()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"cannot read past row {seen}: {one_line(exc)}", path=self.path
            ) from None
        if begin == 0:
            self.shape = (seen, self.shape[1])

    def _from(
        self, rows: int, columns: list[str] | None, begin: int, threads: bool = True
    ) -> Iterator[Batch]:
        units = self.read_units(rows)
        if units is None:
            yield from sliced(self._read(rows, columns), rows)
            return
        for u in units[unit_at(units, begin) :]:
            yield from exact_batches(self._read_blocks(u.lo, u.hi, rows, columns, threads), rows)

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Feature matrices of at most ``rows`` rows, rows ``start`` to ``stop``. Parquet and
        Arrow files start reading at the row group / record batch that holds ``start``; CSV and
        streams read the rows before ``start`` again, but do not convert or compute them."""
        at = self.first_row(rows, start)
        extras = [name for _, name in self.options.extras if name not in self.read_columns]
        for b in self.batches(rows, self.read_columns + extras, start):
            if stop is not None and at + b.num_rows > stop:
                b = b.slice(0, max(stop - at, 0))
            if at + b.num_rows <= start:
                at += b.num_rows
            else:
                if at < start:
                    b, at = b.slice(start - at), start
                cols = feature_columns(b, self.selected, at, self.path)
                extra = extra_arrays(b.column, self.options, self.path, at)
                yield Chunk.of_columns(cols, self.path, None, at, extra=extra)
                at += b.num_rows
            if stop is not None and at >= stop:
                return

    def count_rows(self) -> int:
        """Rows of the table, counting them with a pass over one column if need be."""
        if self.shape[0] is None:
            for _ in self.batches(1 << 20, self.read_columns[:1]):
                pass
        assert self.shape[0] is not None
        return self.shape[0]

    def close(self) -> None:
        pass


_KEY_TYPES = "integers, strings or booleans (or a dictionary of them)"


def check_extra(schema: pa.Schema, role: str, name: str, path: str) -> None:
    """A ``--by`` column holds keys (integers, strings, booleans); ``--weights`` numbers."""
    t = field_named(schema, name, path, f" (--{role})").type
    if role == "by":
        value = t.value_type if pa.types.is_dictionary(t) else t
        ok = (
            pa.types.is_integer(value)
            or pa.types.is_string(value)
            or pa.types.is_large_string(value)
            or pa.types.is_boolean(value)
        )
        if not ok:
            raise DataError(
                f"--by column {name!r} is {t}; group keys must be {_KEY_TYPES}",
                path=path,
                feature=name,
            )
    elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise DataError(
            f"--weights column {name!r} is {t}; weights must be numbers", path=path, feature=name
        )


def extra_arrays(
    column: Any, options: TableOptions, path: str, start: int
) -> dict[str, Any] | None:
    """The ``--by`` keys as ``(codes, values)`` and the ``--weights`` as float64, of the rows
    from ``start``; ``column(name)`` gives a column. A missing key is an error naming its row
    (a group cannot be guessed); a missing weight is left NaN for the kernel's check."""
    if not options.extras:
        return None
    out: dict[str, Any] = {}
    if options.by is not None:
        out["by"] = group_codes(column(options.by), options.by, path, start)
    if options.weights is not None:
        out["weights"] = column_to_float64(column(options.weights))
    return out


def group_codes(
    col: pa.Array | pa.ChunkedArray, name: str, path: str, start: int
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A key column as int64 keys (an integer column: the buffer itself), or as ``(codes,
    values)``, Arrow's hash dictionary encoding (strings, booleans, dictionaries)."""
    col = _combined(col)
    if col.null_count:
        row = start + int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(
            f"the --by column {name!r} has no value (null) at row {row}: every row needs its group",
            path=path,
            feature=name,
            row=row,
        )
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if pa.types.is_dictionary(col.type):  # its dictionary may repeat values: encode afresh
        col = col.cast(col.type.value_type)
    enc = col.dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    values = enc.dictionary.to_numpy(zero_copy_only=False)
    if values.dtype == object:
        values = values.astype(str)
    elif values.dtype.kind in "iub":
        values = values.astype(np.int64)
    return codes, values


def group_records(selected: Sequence[Column]) -> list[dict[str, Any]] | None:
    """The artifact's ``feature_groups`` (name, shape and first feature) when a selected column
    is a vector or a tensor; None for a table of scalar columns (nothing to group)."""
    if not any(c.nested for c in selected):
        return None
    out, start = [], 0
    for c in selected:
        out.append({"name": c.name, "shape": list(c.shape), "start": start})
        start += c.width
    return out


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
    if storage.is_uri(path) and isinstance(exc, OSError):  # not the data: the store failed
        return storage.failure(exc, path)
    return DataError(f"not a readable {what} ({one_line(exc)})", path=path)


def disagreement(first: TableSource, other: TableSource) -> str | None:
    """Why shard ``other`` cannot continue ``first``: the first column that differs, or None."""
    if other.features == first.features and other.feature_types == first.feature_types:
        return None  # the common case, of shards written alike: no column by column walk
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
    promoted: list[dict[str, Any]] = []
    first.promoted = promoted
    if all(s.feature_types == first.feature_types for s in shards):
        return  # shards written alike: nothing to promote
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
