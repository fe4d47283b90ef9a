"""numpy arrays to and from Arrow arrays through their buffers, without pandas.

pyarrow's own ``pa.array(ndarray)`` and ``Array.to_numpy()`` import pandas on their first call
(to check for pandas objects): 0.13-0.5 s of a command's start (``python -X importtime``), for
nothing normstat needs. A fixed-width numeric array is one values buffer (and a validity
bitmap when it holds nulls), which numpy and Arrow can share.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def values(col: Any) -> np.ndarray:
    """The values buffer of a fixed-width numeric Arrow array, as numpy, without a copy (a
    null's slot holds whatever the writer left there)."""
    dtype = np.dtype(col.type.to_pandas_dtype())
    buf = col.buffers()[1]
    if buf is None or len(col) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(buf, dtype, count=col.offset + len(col))[col.offset :]


def with_nan(col: Any) -> np.ndarray:
    """A float array's values, copied with NaN where they are null (as they are if not)."""
    out = values(col)
    if col.null_count == 0:
        return out
    bits = np.frombuffer(col.buffers()[0], np.uint8)
    valid = np.unpackbits(bits, bitorder="little")[col.offset : col.offset + len(col)]
    out = out.copy()
    out[valid == 0] = np.nan
    return out


def arrow(x: np.ndarray) -> Any:
    """A 1-d numeric or boolean numpy array as an Arrow array (numbers share the buffer)."""
    import pyarrow as pa

    x = np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        bits = np.packbits(x, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(x), [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(pa.from_numpy_dtype(x.dtype), len(x), [None, pa.py_buffer(x)])


def text(value: str) -> Any:
    """``value`` as an Arrow string scalar (``pa.scalar`` imports pandas too)."""
    import pyarrow as pa

    data = value.encode()
    offsets = np.array([0, len(data)], np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), 1, buffers)[0]
