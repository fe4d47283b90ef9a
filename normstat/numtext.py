"""JSON arrays of numbers read and written in blocks, in memory bounded by the block.

A wide artifact holds arrays of millions of numbers; parsing one as Python lists costs ~100
bytes a value, formatting one as text holds the whole text, and a Python call per value
(``repr``, ``float``) is most of the time. Here an array is read from a binary file a block of
values at a time (Arrow's CSV number parser, correctly rounded: the same floats as ``json``),
and written a block at a time with Arrow's float-to-text cast (the shortest text that reads
back to the same float64, like ``repr``, sometimes spelled differently: ``0.00001`` for
``1e-05``). Integral floats get a ``.0`` so that ``json`` reads them back as floats (``-0.0``
keeps its sign).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import numpy as np

from normstat.arrowbuf import arrow, with_nan
from normstat.arrowbuf import text as as_text
from normstat.errors import ArtifactError

READ_BYTES = 1 << 18
"""Text read at a time; a block of values needs about 20 bytes each beyond it."""
WRITE_VALUES = 1 << 18
"""Values formatted at a time when writing."""
_OPEN, _CLOSE = ord("["), ord("]")


def _one_pass_table() -> bytes:
    """The one translation the text takes before Arrow parses it, one value a line: commas
    become line ends; blanks and brackets become spaces (which Arrow's number parser trims at
    either end of a value and refuses inside one: "1 2", "1 e5"); the characters of numbers
    and ``null`` stay; any other byte becomes ``x``, which no number holds (a string, an
    object, ``NaN``, ``inf``, non-ASCII...)."""
    table = bytearray(b"x" * 256)
    for c in b"0123456789.-+eEnul":
        table[c] = c
    table[ord(",")] = ord("\n")
    for c in b" \t\r\n[]":
        table[c] = ord(" ")
    return bytes(table)


_TABLE = _one_pass_table()
ARROW_VALUES = 1 << 14
"""Arrays this large and larger are formatted by Arrow; smaller ones by ``json`` (a small
artifact's command does not pay Arrow's import)."""


def dump_array(a: np.ndarray, fp: IO[str]) -> None:
    """``a`` as nested JSON lists (non-finite as ``null``) on ``fp``, without the whole text
    or a Python list of every value in memory: the same text as ``json.dumps(a.tolist())``
    with ``", "`` separators."""
    if a.ndim == 0 or a.size < max(4 * ARROW_VALUES, 2):
        fp.write(_text(a))
        return
    fp.write("[")
    row = a[0].size
    if row > WRITE_VALUES and a.ndim > 1:  # rows themselves are wide: each in blocks
        for i in range(a.shape[0]):
            fp.write(", " if i else "")
            dump_array(a[i], fp)
    else:
        # blocks of even size, at least two, formatted side by side (Arrow's kernels release
        # the GIL)
        n = a.shape[0]
        k = min(n, max(FORMAT_THREADS, -(-a.size // WRITE_VALUES)))
        bounds = [n * i // k for i in range(k + 1)]
        for i, text in enumerate(_formatted(a, bounds)):
            fp.write(", " if i else "")
            fp.write(text[1:-1])
    fp.write("]")


FORMAT_THREADS = 2
"""Blocks of one array formatted at once, by as many threads (the JSON of a statistic per
group is the serial tail of a ``--by`` fit); as many block texts wait in memory."""


def _formatted(a: np.ndarray, bounds: list[int]) -> Iterator[str]:
    """The text of each block ``a[lo:hi]`` between ``bounds``, in order, ``FORMAT_THREADS``
    ahead."""
    with ThreadPoolExecutor(FORMAT_THREADS) as pool:
        pending: deque[Future[str]] = deque()
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            pending.append(pool.submit(_text, a[lo:hi]))
            if len(pending) >= FORMAT_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _text(a: np.ndarray) -> str:
    if a.size < ARROW_VALUES or a.dtype.kind not in "iuf":  # few values, or booleans: rare
        if a.dtype.kind in "iub":
            value: Any = a.tolist()
        else:
            obj = a.astype(object)
            obj[~np.isfinite(a)] = None
            value = obj.tolist()
        return json.dumps(value, allow_nan=False, separators=(", ", ": "))
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        flat = flat.astype(np.float64, copy=False)
        text = pc.cast(arrow(flat), pa.string())
        finite = np.isfinite(flat)
        # "3", "-0" would read back as ints: only whole values can be spelled so, so only
        # their text is looked at (most statistics have none)
        with np.errstate(invalid="ignore"):  # NaN and inf are not whole: ``finite`` says so
            whole = np.flatnonzero(finite & (flat == np.trunc(flat)))
        if whole.size:
            sub = text.take(arrow(whole))
            integral = pc.match_substring_regex(sub, r"^-?[0-9]+$")
            dotted = pc.binary_join_element_wise(sub, as_text(".0"), as_text(""))
            sub = pc.if_else(integral, dotted, sub)
            mask = np.zeros(flat.size, bool)
            mask[whole] = True
            text = pc.replace_with_mask(text, arrow(mask), sub)
        if not finite.all():
            text = pc.if_else(arrow(finite), text, as_text("null"))
    else:
        text = pc.cast(arrow(flat), pa.string())
    for d in reversed(range(a.ndim)):  # innermost lists first: "a, b" -> "[a, b]", then theirs
        lists = int(np.prod(a.shape[:d]))
        offsets = arrow(np.arange(lists + 1, dtype=np.int64) * a.shape[d])
        joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, text), as_text(", "))
        text = pc.binary_join_element_wise(as_text("["), joined, as_text("]"), as_text(""))
    return str(text[0].as_py())


class ArrayReader:
    """The numbers of one JSON array (nested lists of numbers and ``null``, as :func:`dump_array`
    writes), read from ``fp`` positioned at its ``[``, ``take(n)`` values at a time; ``null`` is
    NaN. Anything else in the array (a string, ``NaN``, an object, a value beyond float64) is an
    :class:`ArtifactError` naming ``key`` and the index of the value."""

    def __init__(self, fp: IO[bytes], key: str, path: str) -> None:
        self.fp, self.key, self.path = fp, key, path
        self.depth = 0
        self.rest = b""  # text after the last complete value read
        self.values = np.empty(0)
        self.done = False
        self.read = 0  # values handed out
        self.end = -1  # the file offset just past the closing bracket
        self.max_depth = 0  # how deep the lists nest

    def fail(self, what: str) -> ArtifactError:
        return ArtifactError(f"'{self.key}' {what}", path=self.path)

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` values (fewer only when the array ends)."""
        parts = [self.values]
        have = self.values.size
        while have < n and not self.done:
            more = self._more()
            parts.append(more)
            have += more.size
        flat = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.values = flat[n:]
        self.read += min(n, flat.size)
        return flat[:n]

    def _more(self) -> np.ndarray:
        start = self.fp.tell()
        chunk = self.fp.read(READ_BYTES)
        if not chunk:
            raise self.fail("is cut short: the file ends inside the array")
        raw = np.frombuffer(chunk, np.uint8)
        at = np.flatnonzero((raw == _OPEN) | (raw == _CLOSE))  # brackets only: few
        depth = self.depth + np.cumsum(np.where(raw[at] == _OPEN, 1, -1))
        if self.depth == 0 and chunk[:1] != b"[":
            raise self.fail("is not an array of numbers")
        closed = at[depth == 0]
        if closed.size:  # the array ends in this chunk
            stop = int(closed[0]) + 1
            self.end, self.done = start + stop, True
            chunk = chunk[:stop]
            depth = depth[at < stop]
        if depth.size:
            self.depth = int(depth[-1])
            self.max_depth = max(self.max_depth, int(depth.max()))
        text = self.rest + chunk
        if not self.done:
            cut = text.rfind(b",")
            text, self.rest = (text[:cut], text[cut + 1 :]) if cut >= 0 else (b"", text)
        return self._parse(text)

    def _parse(self, text: bytes) -> np.ndarray:
        """The values of ``text``: whole values, commas, blanks and brackets. One translation
        (``_TABLE``) makes it one value a line and spoils every byte that is not part of a
        number or ``null``; ``null`` becomes ``" nan"``, which the text itself cannot hold
        (``a`` is spoilt); Arrow's CSV reader then parses each line as a float64 or refuses
        it. What Arrow would accept beyond JSON numbers is refused after: values beyond
        float64 (``inf``)."""
        # " nan": the blank is trimmed, and refused after a sign ("-null" is not "-nan")
        lines = text.translate(_TABLE).replace(b"null", b" nan")
        if not lines or lines.isspace():  # no value ("[]", "[[], []]" of a 0-sized shape)
            return np.empty(0)
        import pyarrow as pa
        import pyarrow.csv as pcsv

        expected = lines.count(b"\n") + 1
        try:
            column = pcsv.read_csv(
                pa.py_buffer(lines),
                read_options=pcsv.ReadOptions(column_names=["v"], use_threads=False),
                parse_options=pcsv.ParseOptions(ignore_empty_lines=False, quote_char=False),
                convert_options=pcsv.ConvertOptions(
                    column_types={"v": pa.float64()}, null_values=["null"]
                ),
            ).column(0)
        except pa.ArrowInvalid:
            raise self.fail(f"holds something other than numbers near value {self._at()}") from None
        chunks = [with_nan(c) for c in column.chunks]
        a = chunks[0] if len(chunks) == 1 else np.concatenate(chunks) if chunks else np.empty(0)
        if a.size != expected:
            raise self.fail(f"holds something other than numbers near value {self._at()}")
        if np.isinf(a).any():
            raise self.fail(f"holds a number too large for float64 at value {self._at(a)}")
        return a

    def _at(self, a: np.ndarray | None = None) -> int:
        base = self.read + self.values.size
        return base + (int(np.argmax(np.isinf(a))) if a is not None else 0)
