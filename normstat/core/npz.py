"""Reading one ``.npy`` member of an NPZ file within a byte budget: the sizes that the zip and
the NPY header declare are checked before anything is inflated (a zip bomb is refused from its
metadata), and the CRC is checked as the member is read. Shared by the artifact and checkpoint
readers."""

from __future__ import annotations

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
    name = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else info.filename
    if info.file_size > limit + _NPY_HEADER_BYTES:
        raise ArtifactError(
            f"NPZ member {name!r} declares {info.file_size} bytes; at most "
            f"{limit + _NPY_HEADER_BYTES} fit its feature_shape",
            path=path,
        )
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        if dtype.kind not in "biufU":
            raise ArtifactError(
                f"NPZ member {name!r} has dtype {dtype}, expected integers or floats", path=path
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limit:
            raise ArtifactError(
                f"NPZ member {name!r} declares shape {list(shape)} of {dtype}, more than its "
                "feature_shape allows",
                path=path,
            )
        data = fp.read(nbytes)
        if len(data) != nbytes or fp.read(1):
            raise ArtifactError(f"NPZ member {name!r} is not the size its header says", path=path)
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
