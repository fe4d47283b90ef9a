"""Chunked HDF5 from a bucket: the chunks are fetched by coalesced ranged GETs and decoded by
normstat (deflate, shuffle); every value must be bit for bit what h5py reads from the same file,
and a file whose chunk index lies is an error naming the rows, never a wrong value."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from test_storage import BUCKET, put, s3, s3_server  # noqa: F401  (fixtures)

from normstat.errors import DataError
from normstat.sources import hdf5_chunks
from normstat.sources.hdf5 import Hdf5Dataset

pytest.importorskip("moto.server")


def _rows(uri: str, rows: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    src = Hdf5Dataset(uri, "/x")
    try:
        return np.concatenate([c.data.copy() for c in src.chunks(rows, start, stop)])
    finally:
        src.close()


LAYOUTS = {
    "plain": {},
    "gzip": {"compression": "gzip", "compression_opts": 6},
    "shuffle+gzip": {"compression": "gzip", "shuffle": True},
    "shuffle": {"shuffle": True},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<i2", "|u1"])
def test_decoded_chunks_equal_h5pys_read(s3, tmp_path, layout, dtype):  # noqa: F811
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((1003, 3, 2)) * 50).astype(dtype)
    x[::5] = 0  # runs that compress
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(64, 3, 2), **LAYOUTS[layout])
    uri = put(s3, tmp_path / "t.h5", "t.h5")
    src = Hdf5Dataset(uri, "/x")
    assert src._chunked is not None  # read here, not by h5py
    src.close()
    with h5py.File(tmp_path / "t.h5") as f:
        want = f["x"][:]
    np.testing.assert_array_equal(want, x)
    for rows, start, stop in [(64, 0, None), (200, 0, None), (64 * 5, 37, 1000), (1003, 0, None)]:
        got = _rows(uri, rows, start, stop)
        assert got.dtype == want.dtype
        assert got.tobytes() == want[start:stop].tobytes()


def test_coalesced_requests_stay_bounded(s3, tmp_path, monkeypatch):  # noqa: F811
    """Small requests force many groups; the values stay the same."""
    x = np.arange(4000 * 4, dtype="<f4").reshape(4000, 4)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(100, 4), compression="gzip")
    uri = put(s3, tmp_path / "t.h5", "t.h5")
    seen: list[int] = []
    real = hdf5_chunks.ChunkReader._fetch

    def spy(self, group):
        seen.append(len(group))
        return real(self, group)

    monkeypatch.setattr(hdf5_chunks.ChunkReader, "_fetch", spy)
    monkeypatch.setattr(hdf5_chunks, "REQUEST_BYTES", 3000)
    np.testing.assert_array_equal(_rows(uri, 1000), x)
    assert len(seen) > 4 and sum(seen) == 40  # each chunk fetched once, in several GETs


def test_other_filters_and_layouts_go_through_h5py(s3, tmp_path):  # noqa: F811
    x = np.arange(600, dtype="<f4").reshape(200, 3)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("fletcher", data=x, chunks=(50, 3), fletcher32=True)
        f.create_dataset("split", data=x, chunks=(50, 1))  # chunks split a row
        f.create_dataset("big_endian", data=x.astype(">f4"), chunks=(50, 3))
        f.create_dataset("scaleoffset", data=x, chunks=(50, 3), scaleoffset=2)
    uri = put(s3, tmp_path / "t.h5", "t.h5")
    for name in ("fletcher", "split", "big_endian", "scaleoffset"):
        src = Hdf5Dataset(uri, f"/{name}")
        try:
            # a big-endian file type is read as is (h5py gives the same '>f4' values)
            assert (src._chunked is None) == (name != "big_endian"), name
            got = np.concatenate([c.data.copy() for c in src.chunks(64)])
        finally:
            src.close()
        with h5py.File(tmp_path / "t.h5") as f:
            want = f[name][:]
        assert got.tobytes() == want.astype(got.dtype).tobytes()  # in the chunk's byte order


def _damage(path, dataset: str, how: str) -> None:
    """Rewrite bytes of the first stored chunk of ``dataset`` in place."""
    with h5py.File(path) as f:
        info = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as fp:
        fp.seek(info.byte_offset)
        if how == "garbage":
            fp.write(b"\xff" * info.size)
        elif how == "bomb":  # a valid stream that inflates to more than the chunk
            bomb = zlib_bomb(info.size)
            fp.write(bomb)


def zlib_bomb(room: int) -> bytes:
    import zlib

    data = zlib.compress(b"\0" * 10**7, 9)
    assert len(data) <= room
    return data


@pytest.mark.parametrize("how", ["garbage", "bomb"])
def test_a_damaged_chunk_is_an_error_naming_its_rows(s3, tmp_path, how):  # noqa: F811
    x = np.random.default_rng(0).standard_normal((400, 100)).astype("<f4")
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(100, 100), compression="gzip")
    _damage(tmp_path / "t.h5", "x", how)
    uri = put(s3, tmp_path / "t.h5", "t.h5")
    with pytest.raises(DataError, match=r"rows 0:100 .*damaged"):
        _rows(uri, 100)


def test_a_chunk_index_pointing_outside_the_object_is_refused(s3, tmp_path):  # noqa: F811
    import dataclasses

    x = np.arange(800, dtype="<f4").reshape(200, 4)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(50, 4), compression="gzip")
    full = (tmp_path / "t.h5").read_bytes()
    uri = put(s3, tmp_path / "t.h5", "t.h5")
    # an object cut short: HDF5 itself refuses it (its end-of-file address is past the end)
    (tmp_path / "cut.h5").write_bytes(full[:-100])
    with pytest.raises(DataError, match="truncated"):
        _rows(put(s3, tmp_path / "cut.h5", "cut.h5"), 200)
    # an index claiming bytes past the object's end, or more bytes than the values need
    size = len(full)
    for offsets, sizes in [([0, 0, 0, size - 10], [10, 10, 10, 11]), ([0] * 4, [10**7] * 4)]:
        src = Hdf5Dataset(uri, "/x")
        try:
            reader = src._chunked
            assert reader is not None
            reader.index = dataclasses.replace(
                reader.index, offsets=np.array(offsets), sizes=np.array(sizes)
            )
            with pytest.raises(DataError, match=r"rows \d+:\d+ claims .* damaged"):
                list(src.chunks(200))
        finally:
            src.close()
