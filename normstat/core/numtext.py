"""JSON arrays of numbers read and written in blocks, in memory bounded by the block.

A wide artifact holds arrays of millions of numbers; parsing one as Python lists costs ~100
bytes a value, formatting one as text holds the whole text. Here an array is read from a
binary file a block of values at a time (numpy's C parser, correctly rounded: the same floats
as ``json``), and written a block at a time with ``json``'s own float repr.
"""

from __future__ import annotations

import json
import warnings
from typing import IO, Any

import numpy as np

from normstat.errors import ArtifactError

READ_BYTES = 1 << 18
"""Text read at a time; a block of values needs about 20 bytes each beyond it."""
WRITE_VALUES = 1 << 16
"""Values formatted at a time when writing."""
_ALLOWED = str.maketrans("", "", "0123456789.-+eE, \n\t\r")
_OPEN, _CLOSE = ord("["), ord("]")


def dump_array(a: np.ndarray, fp: IO[str]) -> None:
    """``a`` as nested JSON lists (non-finite as ``null``) on ``fp``, without the whole text
    or a Python list of every value in memory: the same text as ``json.dumps(a.tolist())``
    with ``", "`` separators."""
    if a.size <= WRITE_VALUES or a.ndim == 0:
        fp.write(_text(a))
        return
    fp.write("[")
    row = a[0].size
    if row > WRITE_VALUES and a.ndim > 1:  # rows themselves are wide: each in blocks
        for i in range(a.shape[0]):
            fp.write(", " if i else "")
            dump_array(a[i], fp)
    else:
        step = max(1, WRITE_VALUES // max(row, 1))
        for i in range(0, a.shape[0], step):
            fp.write(", " if i else "")
            fp.write(_text(a[i : i + step])[1:-1])
    fp.write("]")


def _text(a: np.ndarray) -> str:
    if a.dtype.kind in "iu":
        value: Any = a.tolist()
    else:
        obj = a.astype(object)
        obj[~np.isfinite(a)] = None
        value = obj.tolist()
    return json.dumps(value, allow_nan=False, separators=(", ", ": "))


class ArrayReader:
    """The numbers of one JSON array (nested lists of numbers and ``null``, as :func:`dump_array`
    writes), read from ``fp`` positioned at its ``[``, ``take(n)`` values at a time; ``null`` is
    NaN. Anything else in the array (a string, ``NaN``, an object, a value beyond float64) is an
    :class:`ArtifactError` naming ``key`` and the index of the value."""

    def __init__(self, fp: IO[bytes], key: str, path: str) -> None:
        self.fp, self.key, self.path = fp, key, path
        self.depth = 0
        self.rest = ""  # text after the last complete value read
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
        try:
            text = self.rest + chunk.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("holds something other than numbers") from None
        text = text.replace("[", " ").replace("]", " ")
        if not self.done:
            cut = text.rfind(",")
            text, self.rest = (text[:cut], text[cut + 1 :]) if cut >= 0 else ("", text)
        return self._parse(text)

    def _parse(self, text: str) -> np.ndarray:
        if not text.replace(",", "").strip():  # no value ("[]", or "[[], []]" of a 0-sized shape)
            return np.empty(0)
        bare = text.replace("null", "")
        if bare.translate(_ALLOWED):
            raise self.fail(f"holds something other than numbers near value {self._at()}")
        expected = text.count(",") + 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a partial parse: caught by the count below
            try:
                a = np.fromstring(text.replace("null", "nan"), dtype=np.float64, sep=",")
            except ValueError:  # numpy >= 2.3 raises on what it cannot parse
                a = np.empty(0)
        if a.size != expected:
            raise self.fail(f"holds something other than numbers near value {self._at()}")
        if np.isinf(a).any():
            raise self.fail(f"holds a number too large for float64 at value {self._at(a)}")
        return a

    def _at(self, a: np.ndarray | None = None) -> int:
        base = self.read + self.values.size
        return base + (int(np.argmax(np.isinf(a))) if a is not None else 0)
