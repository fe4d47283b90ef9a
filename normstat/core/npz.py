"""Reading one ``.npy`` member of an NPZ file within a byte budget: the sizes that the zip and
the NPY header declare are checked before anything is inflated (a zip bomb is refused from its
metadata), and the CRC is checked as the member is read. Shared by the artifact and checkpoint
readers."""

from __future__ import annotations

import contextlib
import math
import zipfile
from typing import Any

import numpy as np

from normstat.errors import ArtifactError

_NPY_HEADER_BYTES = 2**16
"""The largest NPY header numpy writes is far below this; it bounds what the zip may declare
beyond the values themselves."""


def read_npz_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: str) -> Any:
    """One ``.npy`` member of at most ``limit`` bytes of values; refused from the sizes the zip
    and the NPY header declare before anything is inflated; the CRC is checked."""
    member = NpzMember(zf, info, limit, path)
    with member.fp:
        data = member.fp.read(member.nbytes)
        if len(data) != member.nbytes or member.fp.read(1):
            raise member.fail("is not the size its header says")
    shape, dtype = member.shape, member.dtype
    return np.frombuffer(data, dtype).reshape(shape, order="F" if member.fortran else "C")


class NpzMember:
    """An opened ``.npy`` member whose header was read and checked (dtype, declared size): its
    values can be read whole or, in C order, ``take(n)`` at a time (a wide artifact's
    ``show``); reading it to its end checks its CRC."""

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: str):
        name = info.filename
        self.name, self.path = name[: -len(".npy")] if name.endswith(".npy") else name, path
        if info.file_size > limit + _NPY_HEADER_BYTES:
            raise self.fail(
                f"declares {info.file_size} bytes; at most {limit + _NPY_HEADER_BYTES} fit "
                "its feature_shape"
            )
        self.fp = zf.open(info)
        version = np.lib.format.read_magic(self.fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(self.fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(self.fp)
        if dtype.kind not in "biufU":
            raise self.fail(f"has dtype {dtype}, expected integers or floats")
        self.shape, self.fortran, self.dtype = tuple(shape), bool(fortran), dtype
        self.nbytes = math.prod(shape) * dtype.itemsize
        if self.nbytes > limit:
            raise self.fail(
                f"declares shape {list(shape)} of {dtype}, more than its feature_shape allows"
            )
        self.read = 0  # values handed out by take

    def fail(self, what: str) -> ArtifactError:
        with contextlib.suppress(Exception):
            self.fp.close()
        return ArtifactError(f"NPZ member {self.name!r} {what}", path=self.path)

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` values in C order (fewer only at the end of the member)."""
        n = min(n, math.prod(self.shape) - self.read)
        data = self.fp.read(n * self.dtype.itemsize)
        if len(data) != n * self.dtype.itemsize:
            raise self.fail("is not the size its header says")
        self.read += n
        return np.frombuffer(data, self.dtype)

    def finish(self) -> None:
        """All values were taken: nothing may follow, and the CRC must hold (checked by
        :mod:`zipfile` as the end is read)."""
        if self.read != math.prod(self.shape) or self.fp.read(1):
            raise self.fail("is not the size its header says")
        self.fp.close()
