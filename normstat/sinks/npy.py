"""``.npy`` output (written through a memory map of the temporary file) and NPY to a stream."""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

import numpy as np


class NpyWriter:
    def __init__(self, tmp_path: str, shape: tuple[int, ...], dtype: np.dtype, **_: Any) -> None:
        self._out = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=dtype, shape=shape)

    def write(self, start: int, block: np.ndarray) -> None:
        self._out[start : start + block.shape[0]] = block

    def close(self) -> None:
        self._out.flush()
        del self._out


class NpyStreamWriter:
    """Header first, then C-order rows as they come: ``-o -`` for a pipe into a training script."""

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, stream: BinaryIO | None = None, **_: Any
    ) -> None:
        self._fp = stream if stream is not None else sys.stdout.buffer
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(shape),
        }
        np.lib.format.write_array_header_2_0(self._fp, header) if _needs_v2(
            shape
        ) else np.lib.format.write_array_header_1_0(self._fp, header)

    def write(self, start: int, block: np.ndarray) -> None:
        self._fp.write(np.ascontiguousarray(block).data)

    def close(self) -> None:
        self._fp.flush()


def _needs_v2(shape: tuple[int, ...]) -> bool:
    return len(repr(tuple(shape))) > 60000
