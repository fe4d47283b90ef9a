"""CSV through pyarrow's streaming reader: a header row (or ``--no-header``), then blocks of rows
converted in turn.

pyarrow infers column types from the first block (1 MiB) only, and by itself would silently drop
a numeric column that is empty there, or that holds one stray ``?`` there. So the inference is
checked, never trusted (see docs/tables.md):

- a column empty in the first block is typed by the first block where it holds values (a scan of
  that column only, stopped as soon as every such column has a type);
- a text column whose cells are mostly numbers is a numeric column with bad cells: an error
  naming the column and the row of the first bad cell;
- a cell further down that does not convert to its column's type is an error naming the column
  and the row of that cell (found by re-reading the failing block as text), never a drop.

``--column-types`` fixes a column's type instead (``string`` keeps a column out). Feature
columns are read as float64 (a column of integers in the first block may hold ``1.5`` further
down). Empty cells and the usual spellings of missing values (``NA``, ``NaN``, ``null``, or
``--null-values``) are nulls, hence missing values.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from normstat import storage
from normstat.errors import DataError, UsageError
from normstat.sources.reading import TableOptions
from normstat.sources.table import Batch, TableSource, arrow_error, field_named, metadata_roles

# Small blocks: with large ones pyarrow's reader held memory growing with the file; with 1 MiB
# blocks it stays flat, and no slower (docs/performance.md, "Figures behind the code").
_BLOCK_BYTES = 1 << 20
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(inf|infinity|nan)\s*$"


def _declared(options: TableOptions) -> dict[str, pa.DataType]:
    out = {}
    for name, alias in options.column_types:
        try:
            out[name] = pa.type_for_alias(alias)
        except ValueError:
            raise UsageError(
                f"--column-types {name}:{alias}: unknown type {alias!r} (e.g. float64, int64, "
                "string, bool, timestamp[s])"
            ) from None
    return out


class _Csv:
    """How to open one CSV: the options, and the column names once known."""

    def __init__(self, options: TableOptions, names: list[str] | None = None) -> None:
        self.options = options
        self.names = names

    def open(
        self,
        source: str | BinaryIO,
        types: dict[str, pa.DataType] | None = None,
        columns: list[str] | None = None,
        text_nulls: bool = False,
    ) -> pacsv.CSVStreamingReader:
        o = self.options
        read = pacsv.ReadOptions(
            block_size=_BLOCK_BYTES,
            column_names=None if o.header else self.names,
            autogenerate_column_names=not o.header and self.names is None,
        )
        convert = pacsv.ConvertOptions(
            column_types=types or {},
            include_columns=columns,
            strings_can_be_null=text_nulls,
            **({} if o.null_values is None else {"null_values": list(o.null_values)}),
        )
        parse = pacsv.ParseOptions(delimiter=o.delimiter)
        if isinstance(source, str) and storage.is_uri(source):
            source = storage.open_stream(source)  # read as it streams; .gz decompressed
        return pacsv.open_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )

    def text(self, source: str, columns: list[str]) -> Iterator[Batch]:
        """``columns`` as raw bytes (nulls as nulls): conversion cannot fail."""
        return iter(self.open(source, {c: pa.binary() for c in columns}, columns, True))


def _generated(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


# ---------------------------------------------------------------------------------------------
# what a column of text holds


def _converts(col: pa.Array, t: pa.DataType) -> bool:
    try:
        text = pc.cast(col, pa.string()) if pa.types.is_binary(col.type) else col
        if not (pa.types.is_string(t) or pa.types.is_binary(t)):
            pc.cast(pc.utf8_trim_whitespace(text), t)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def first_bad(col: pa.Array, t: pa.DataType) -> int | None:
    """Index of the first cell of ``col`` (text) that does not convert to ``t``, by bisection
    over prefixes (each step one vectorised cast); None if all do."""
    if _converts(col, t):
        return None
    lo, hi = 0, len(col)  # the prefix [:hi] fails, [:lo] converts
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _converts(col.slice(0, mid), t):
            lo = mid
        else:
            hi = mid
    return hi - 1


def _numeric_share(col: pa.Array) -> float:
    """Share of the non-null cells that spell a number."""
    values = pc.drop_null(col)
    if len(values) == 0:
        return 0.0
    text = pc.cast(values, pa.string(), safe=False)
    return pc.sum(pc.match_substring_regex(text, _NUMBER, ignore_case=True)).as_py() / len(values)


def _kind(col: pa.Array) -> pa.DataType | None:
    """The type of a column of text: int64 or float64 when every cell converts, string when most
    cells are not numbers; None when most are numbers but some are not (a numeric column with
    bad cells)."""
    if _converts(col, pa.int64()):
        return pa.int64()
    if _converts(col, pa.float64()):
        return pa.float64()
    return pa.string() if _numeric_share(col) < 0.5 else None


def _cell(col: pa.Array, i: int) -> str:
    v = col[i].as_py()
    if isinstance(v, bytes):
        v = v.decode("utf-8", "backslashreplace")
    return repr(v)


def bad_cell(path: str, name: str, col: pa.Array, t: pa.DataType, offset: int) -> DataError:
    i = first_bad(col, t)
    i = 0 if i is None else i
    return DataError(
        f"column {name!r}, row {offset + i}: {_cell(col, i)} is not {_type_word(t)}; declare the "
        f"column's type (--column-types {name}:string keeps it out of the features) or read such "
        "cells as missing (--null-values)",
        path=path,
        feature=name,
        row=offset + i,
    )


def _type_word(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "a number"
    return f"a {t} value"


# ---------------------------------------------------------------------------------------------
# the reader


class CsvFile(TableSource):
    format = "csv"

    def __init__(
        self, path: str, columns: Sequence[str] | None = None, options: TableOptions | None = None
    ) -> None:
        options = options or TableOptions()
        self._csv = _Csv(options)
        declared = _declared(options)
        try:
            if not options.header:
                self._csv.names = _generated(len(self._csv.open(path).schema))
            first = self._csv.open(path, declared)
            schema = first.schema
            schema.names  # noqa: B018  (pyarrow decodes the header here: it may not be UTF-8)
            head = _first_block(first) if _has_text(schema, declared) else None
        except pa.ArrowInvalid as exc:
            raise self._declared_failure(path, declared, exc) from None
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "CSV file", path) from None
        for name in declared:
            field_named(schema, name, path, " (--column-types)")
        wanted = _candidates(schema, columns, options, declared)
        types = dict(declared)
        try:
            types.update(self._empty_columns(path, schema, declared, wanted))
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(exc, "CSV file", path) from None
        if head is not None:
            _check_text(path, head, wanted, declared, options)
        schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in schema])
        self._setup(path, schema, columns, None, options)
        self._types = {**types, **_as_float(schema, self.features)}
        self.feature_types = [str(self._types[n]) for n in self.features]
        self.schema = pa.schema([pa.field(f.name, self._types.get(f.name, f.type)) for f in schema])

    def _declared_failure(
        self, path: str, declared: dict[str, pa.DataType], exc: BaseException
    ) -> DataError:
        """Why pyarrow fails opening the file: a declared type that fails in the first block is
        that cell, with its row; anything else is pyarrow's message."""
        number = _column_number(exc)
        try:
            names = self._csv.open(path).schema.names
            if number is not None and number < len(names) and names[number] in declared:
                name = names[number]
                col = next(self._csv.text(path, [name])).column(name)
                if first_bad(col, declared[name]) is not None:
                    return bad_cell(path, name, col, declared[name], 0)
        except (pa.ArrowException, OSError, StopIteration):
            pass
        return arrow_error(exc, "CSV file", path)

    def _empty_columns(
        self,
        path: str,
        schema: pa.Schema,
        declared: dict[str, pa.DataType],
        wanted: set[str],
    ) -> dict[str, pa.DataType]:
        """Types of the columns empty in the first block, from the first block where each holds
        values (a column empty throughout stays null)."""
        empty = [f.name for f in schema if pa.types.is_null(f.type) and f.name not in declared]
        found: dict[str, pa.DataType] = {}
        if not empty:
            return found
        at = 0
        for b in self._csv.text(path, empty):
            for name in empty:
                col = b.column(name)
                if name in found or col.null_count == len(col):
                    continue
                t = _kind(col)
                if t is None and name in wanted:
                    raise bad_cell(path, name, col, pa.float64(), at)
                found[name] = pa.string() if t is None else t
            at += b.num_rows
            if len(found) == len(empty):
                break
        return found

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        yield from _located(
            iter(self._csv.open(self.path, self._types, columns)),
            lambda at, number: self._bad_cell(at, columns, number),
        )

    def _bad_cell(self, at: int, columns: list[str] | None, number: int | None) -> DataError | None:
        """The first cell at or after row ``at`` that does not convert to its column's type (in
        column ``number`` of the file, when pyarrow said which)."""
        names = columns or self.schema.names
        if number is not None and number < len(self.schema) and self.schema.names[number] in names:
            names = [self.schema.names[number]]
        want = {n: self.schema.field(n).type for n in names}
        start = 0
        for b in self._csv.text(self.path, list(want)):
            if start + b.num_rows > at:
                hits = [(_first_bad_or_null(b.column(n), t), n) for n, t in want.items()]
                found = [(i, n) for i, n in hits if i is not None]
                if found:
                    i, n = min(found)
                    return bad_cell(self.path, n, b.column(n).slice(i), want[n], start + i)
            start += b.num_rows
        return None


def _column_number(exc: BaseException) -> int | None:
    m = re.search(r"In CSV column #(\d+)", str(exc))
    return None if m is None else int(m[1])


def _first_bad_or_null(col: pa.Array, t: pa.DataType) -> int | None:
    if pa.types.is_null(t):
        valid = pc.is_valid(col)
        return pc.index(valid, True).as_py() if pc.any(valid).as_py() else None
    return first_bad(col, t)


def _located(
    batches: Iterator[Batch], locate: Callable[[int, int | None], DataError | None]
) -> Iterator[Batch]:
    """The batches; a conversion error becomes the error naming the column and row of the cell
    (``locate`` is given the first row of the block that failed, and the number of the column
    if pyarrow's message names it)."""
    at = 0
    while True:
        try:
            b = next(batches)
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            found = locate(at, _column_number(exc))
            if found is not None:
                raise found from None
            raise
        at += b.num_rows
        yield b


def _first_block(reader: pacsv.CSVStreamingReader) -> Batch | None:
    """The first block, to check its text columns; None when there is none, or when a declared
    type fails there (the read reports that cell, with its row)."""
    try:
        return reader.read_next_batch()
    except (StopIteration, pa.ArrowInvalid):
        return None


def _has_text(schema: pa.Schema, declared: dict[str, pa.DataType]) -> bool:
    return any(
        (pa.types.is_string(f.type) or pa.types.is_binary(f.type)) and f.name not in declared
        for f in schema
    )


def _candidates(
    schema: pa.Schema,
    columns: Sequence[str] | None,
    options: TableOptions,
    declared: dict[str, pa.DataType],
) -> set[str]:
    """The columns that would be features if numeric: those named, else all but the excluded,
    the declared and those the metadata marks."""
    if columns is not None:
        return set(columns) - set(declared)
    skip = set(options.exclude) | set(declared) | set(metadata_roles(schema))
    return {f.name for f in schema} - skip


def _check_text(
    path: str,
    head: Batch,
    wanted: set[str],
    declared: dict[str, pa.DataType],
    options: TableOptions,
) -> None:
    """A text column of the first block that is mostly numbers is a numeric column with bad
    cells: an error naming the first, not a column silently left out."""
    nulls = pa.array(
        list(options.null_values)
        if options.null_values is not None
        else pacsv.ConvertOptions().null_values,
        pa.string(),
    )
    for f in head.schema:
        if f.name not in wanted or f.name in declared:
            continue
        if pa.types.is_string(f.type) or pa.types.is_binary(f.type):
            col = _nulled(head.column(f.name), nulls)
            if _numeric_share(col) >= 0.5:
                raise bad_cell(path, f.name, col, pa.float64(), 0)


def _nulled(col: pa.Array, nulls: pa.Array) -> pa.Array:
    """Text cells that spell a missing value as nulls (a reader of text keeps them as text)."""
    text = pc.cast(col, pa.string(), safe=False)
    return pc.if_else(pc.is_in(text, value_set=nulls), pa.scalar(None, col.type), col)


def _as_float(schema: pa.Schema, features: list[str]) -> dict[str, pa.DataType]:
    return {
        n: pa.float64()
        for n in features
        if pa.types.is_integer(schema.field(n).type) or pa.types.is_floating(schema.field(n).type)
    }


class CsvStream(TableSource):
    """CSV on stdin (``-`` with ``--input-format csv``): one pass, so types come from the first
    block and declarations; a column empty there must be declared (or left out with
    ``--exclude``), and a bad cell further down is reported with the first row of its block."""

    format = "csv"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        stream: BinaryIO | None = None,
        path: str = "-",
        options: TableOptions | None = None,
    ) -> None:
        options = options or TableOptions()
        csv = _Csv(options)
        declared = _declared(options)
        fixed = {_pyarrow_name(n, options): t for n, t in declared.items()}
        fixed.update(
            {_pyarrow_name(n, options): pa.string() for n in options.exclude if n not in declared}
        )
        try:
            reader = csv.open(stream if stream is not None else sys.stdin.buffer, fixed)
            self._names = (
                _generated(len(reader.schema)) if not options.header else reader.schema.names
            )
            head: Batch | None = _named(reader.read_next_batch(), self._names)
        except StopIteration:
            head = None
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "CSV stream", path) from None
        schema = pa.schema(
            [pa.field(n, f.type) for n, f in zip(self._names, reader.schema, strict=True)]
        )
        for name in declared:
            field_named(schema, name, path, " (--column-types)")
        wanted = _candidates(schema, columns, options, declared)
        if head is not None:
            _check_text(path, head, wanted, declared, options)
        for f in schema:
            if pa.types.is_null(f.type) and f.name in wanted and head is not None:
                raise DataError(
                    f"column {f.name!r} is empty in the first block of the stream, so its type "
                    f"is unknown: declare it (--column-types {f.name}:float64) or leave it out "
                    f"(--exclude {f.name})",
                    path=path,
                    feature=f.name,
                )
        self._reader: pacsv.CSVStreamingReader | None = reader
        self._head = head
        self._setup(path, schema, columns, None, options)

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        reader, self._reader = self._reader, None
        if reader is None:
            raise DataError("a stream can be read only once", path=self.path)
        head, self._head = self._head, None
        rest = (_named(b, self._names) for b in reader)
        for b in itertools.chain([] if head is None else [head], rest):
            yield b if columns is None else b.select(columns)


def _pyarrow_name(name: str, options: TableOptions) -> str:
    """pyarrow names the columns of a CSV without header ``f0, f1, ...``; normstat ``c0, c1``."""
    return f"f{name[1:]}" if not options.header and re.fullmatch(r"c\d+", name) else name


def _named(b: Batch, names: list[str]) -> Batch:
    return b if b.schema.names == names else pa.RecordBatch.from_arrays(b.columns, names=names)
