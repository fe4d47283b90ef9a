"""HDF5 rows mapped straight from a contiguous dataset's place in the file must be exactly the rows
h5py reads, for every layout the shortcut accepts, and every other layout must stay with h5py."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import reference

import normstat
from normstat.errors import DataError
from normstat.sources.hdf5 import Hdf5Dataset

DTYPES = ["<f4", ">f4", "<f8", ">f8", "<f2", "|u1", "|i1", ">i2", "<u4", "<i8"]
SHAPES = [(1000,), (1000, 7), (300, 4, 5, 3)]


def _data(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.normal(100.0, 3.0, shape)).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dt)


def _read_all(src: Hdf5Dataset, rows: int) -> np.ndarray:
    chunks = [c.data.copy() for c in src.chunks(rows)]
    assert {c.dtype for c in chunks} == {src.dtype}  # byte order kept, as h5py reports it
    return np.concatenate(chunks)


@pytest.mark.parametrize("userblock", [0, 1024])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_rows_equal_h5py_rows(tmp_path, dtype, shape, userblock):
    x = _data(dtype, shape)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f.create_dataset("pad", data=np.arange(37, dtype="i2"))  # the dataset is not first
        f.create_dataset("x", data=x)
    src = Hdf5Dataset(str(path), "/x")
    try:
        assert src.direct
        got = _read_all(src, rows=97)  # chunks that do not divide the rows
        part = np.concatenate([c.data.copy() for c in src.chunks(50, start=123, stop=260)])
    finally:
        src.close()
    assert src.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(part, x[123:260])


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "|u1"])
def test_fit_through_the_direct_path_matches_numpy(tmp_path, dtype):
    x = _data(dtype, (5000, 3, 4), seed=5)
    if x.dtype.kind == "f":
        x = (x.astype(np.float64) + 1e5).astype(x.dtype)  # an offset the naive formula loses
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x)
    got = normstat.fit(str(path), chunk_size=777)
    ref = reference(x, (-1,))
    np.testing.assert_allclose(got.mean, ref["mean"], rtol=1e-13)
    np.testing.assert_allclose(got.var, ref["var"], rtol=1e-10)
    np.testing.assert_array_equal(got.count, ref["count"])


def _compact(f: h5py.File, x: np.ndarray) -> None:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple(x.shape)
    h5py.h5d.create(f.id, b"x", h5py.h5t.py_create(x.dtype), space, dcpl=dcpl)
    f["x"][...] = x


LAYOUTS = {
    "chunked": lambda f, x: f.create_dataset("x", data=x, chunks=(16, 3)),
    "compressed": lambda f, x: f.create_dataset("x", data=x, chunks=(16, 3), compression="gzip"),
    "compact": _compact,
    "unallocated": lambda f, x: f.create_dataset("x", shape=x.shape, dtype=x.dtype, fillvalue=7),
    "external": lambda f, x: f.create_dataset(
        "x", data=x, external=[(f.filename + ".raw", 0, h5py.h5f.UNLIMITED)]
    ),
}


def _odd_float(f: h5py.File, x: np.ndarray) -> None:
    """A 4-byte float with 3 bytes of precision: h5py reads it as float32 by conversion."""
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(23, 16, 7, 0, 16)
    t.set_precision(24)
    t.set_offset(0)
    t.set_ebias(63)
    space = h5py.h5s.create_simple(x.shape)
    h5py.h5d.create(f.id, b"x", t, space)
    f["x"][...] = x


LAYOUTS["non-standard float"] = _odd_float


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_other_layouts_stay_with_h5py(tmp_path, layout):
    x = np.arange(60, dtype="<f4").reshape(20, 3) / 4
    path = tmp_path / f"{layout}.h5"
    # with a user block, HDF5 reports an unallocated dataset's offset as 511, not "undefined"
    with h5py.File(path, "w", userblock_size=512) as f:
        LAYOUTS[layout](f, x)
        expected = f["x"][...]
    if layout == "unallocated":  # fill values only: refused since issue 14
        with pytest.raises(DataError, match="stores only 0 bytes"):
            Hdf5Dataset(str(path), "/x")
        return
    src = Hdf5Dataset(str(path), "/x")
    try:
        assert not src.direct
        np.testing.assert_array_equal(_read_all(src, rows=7), expected)
    finally:
        src.close()


def test_a_file_cut_short_inside_the_data_is_one_error_line(tmp_path):
    """A contiguous dataset whose file was cut off part-way through its values (as a copy that
    ran out of disk leaves it): one line naming the file, exit 1, no traceback."""
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.ones((100_000, 4), "<f8"))
        offset = f["x"].id.get_offset()
    with open(path, "r+b") as fh:
        fh.truncate(offset + 1_000_000)
    done = subprocess.run(
        [sys.executable, "-m", "normstat", "fit", f"{path}:/x", "-o", str(tmp_path / "s.json")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut.h5" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s.json").exists()


def test_mapped_chunks_are_read_only_and_outlive_the_source(tmp_path):
    x = _data("<f8", (1000, 5), seed=9)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x)
    src = Hdf5Dataset(str(path), "/x")
    assert src.direct
    kept = [c.data for c in src.chunks(300)]
    src.close()
    np.testing.assert_array_equal(np.concatenate(kept), x)
    with pytest.raises(ValueError, match="read-only"):
        kept[0][0, 0] = 1.0
    with h5py.File(path, "r") as f:  # the file itself is untouched
        np.testing.assert_array_equal(f["x"][...], x)
