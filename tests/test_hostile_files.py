"""Issue 14, the input side: files that ask for data nobody asked for, that declare more than they
hold, that would make memory follow the file instead of the chunk size, or that are damaged in
ways that used to escape as a traceback or a numpy warning. Each test is a reproduction that
failed on main at c10fe01.

Every refusal is one ``Error: ...`` line naming the file, exit 1 (2 for a usage error), with no
traceback and no ``RuntimeWarning``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat import artifact
from normstat.cli import main


def cli(*args: object, cwd: Path | None = None):
    """Run the CLI in-process; fail on a traceback or a numpy RuntimeWarning."""
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, runtime
    return result


def refused(result, fragment: str, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------ artifacts


def _doc() -> dict:
    stats = normstat.fit_arrays(np.arange(12.0).reshape(4, 3))
    return json.loads(artifact.dumps(stats))


def _write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(mean=[10**400, 1.0, 2.0]), "'mean'"),
        (lambda d: d.update(count=[1e30, 4, 4]), "'count'"),
        (lambda d: d.update(count=[2**63, 4, 4]), "'count'"),
        (lambda d: d.update(mean=["4.5", 5.5, 6.5]), "'mean'"),
        (lambda d: d.update(mean=[True, 5.5, 6.5]), "'mean'"),
        (lambda d: d.update(min=[100.0, 1.0, 2.0]), "min"),
        (lambda d: d.update(mean=[-50.0, 5.5, 6.5]), "mean"),
        (lambda d: d.update(ddof=10**30), "'ddof'"),
        (lambda d: d.update(feature_shape=[10**12]), "feature_shape"),
        (lambda d: d.update(source={"paths": "x", "shape": 5}), "'source'"),
    ],
    ids=[
        "400-digit mean",
        "count 1e30",
        "count 2**63",
        "string mean",
        "bool mean",
        "min > max",
        "mean outside range",
        "ddof 10**30",
        "huge feature_shape",
        "source fields",
    ],
)
def test_artifact_values_out_of_range_are_refused(tmp_path, edit, fragment):
    doc = _doc()
    edit(doc)
    path = _write_json(tmp_path / "s.json", doc)
    refused(cli("show", path), fragment)
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    refused(cli("apply", path, tmp_path / "x.npy", "-o", tmp_path / "o.npy"), "s.json")
    assert not (tmp_path / "o.npy").exists()


def test_json_nested_deep_is_refused(tmp_path):
    text = json.dumps(_doc()).replace('"mean": [', '"mean": ' + "[" * 100_000 + "[", 1)
    (tmp_path / "deep.json").write_text(text)
    refused(cli("show", tmp_path / "deep.json"), "deep.json")
    (tmp_path / "deep2.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(cli("show", tmp_path / "deep2.json"), "deep2.json")


def _npz(path: Path, **over: np.ndarray) -> Path:
    stats = normstat.fit_arrays(np.arange(12.0).reshape(4, 3))
    artifact.save(stats, str(path))
    if over:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays.update(over)
        with open(path, "wb") as fp:
            np.savez(fp, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_complex_mean_is_refused(tmp_path):
    path = _npz(tmp_path / "c.npz", mean=np.array([4.5 + 1j, 5.5, 6.5]))
    refused(cli("show", path), "'mean' has dtype complex128")


def test_npz_truncated_or_crc_error_is_refused(tmp_path):
    raw = _npz(tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) * 2 // 3])
    refused(cli("show", tmp_path / "cut.npz"), "cut.npz")
    flipped = bytearray(raw)
    at = raw.index(b"\x93NUMPY", raw.index(b"mean.npy")) + 100  # inside mean's values
    flipped[at] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(flipped))
    refused(cli("show", tmp_path / "crc.npz"), "crc.npz")


def test_npz_zip_bomb_is_refused_before_inflating(tmp_path):
    """4 MB of zip declaring a 4 GB member: refused from the declared sizes, no inflation."""
    path = tmp_path / "bomb.npz"
    good = _npz(tmp_path / "ok.npz")
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            if name != "mean.npy":
                out.writestr(name, src.read(name))
        with out.open("mean.npy", "w", force_zip64=True) as fp:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f8", "fortran_order": False, "shape": (2**29,)}
            )
            fp.write(header.getvalue())
            block = bytes(2**24)
            for _ in range(2**32 // len(block)):
                fp.write(block)
    assert path.stat().st_size < 8 * 2**20
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(cli("show", path), "bomb.npz")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb


def test_npz_unknown_member_is_refused(tmp_path):
    path = _npz(tmp_path / "extra.npz", junk=np.zeros(3))
    refused(cli("show", path), "junk")


# -------------------------------------------------------------------------------- options


def test_ddof_and_checkpoint_every_must_be_sane(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    refused(cli("fit", tmp_path / "x.npy", "--ddof", str(10**30)), "--ddof", code=2)
    for every in ("nan", "inf", "-1"):
        result = cli(
            "fit", tmp_path / "x.npy", "--checkpoint", tmp_path / "c.npz", "--checkpoint-every",
            every,
        )  # fmt: skip
        refused(result, "--checkpoint-every", code=2)


# ------------------------------------------------------------------------ HDF5: reaching out


def _h5(path: Path, build) -> Path:
    with h5py.File(path, "w") as f:
        build(f)
    return path


@pytest.fixture
def outside(tmp_path):
    """A raw float64 file in another directory than the HDF5 files (``tmp_path / "data"``)."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    raw = tmp_path / "elsewhere" / "secret.bin"
    np.arange(80.0).tofile(raw)
    return raw


def test_external_raw_storage_outside_the_directory_is_refused(tmp_path, outside):
    path = _h5(
        tmp_path / "data" / "ext.h5",
        lambda f: f.create_dataset("x", (10, 8), "<f8", external=[(str(outside), 0, 640)]),
    )
    refused(cli("fit", path), "external")
    result = cli("fit", path, "--allow-external")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["max"][-1] == 79.0
    refused(cli("apply", tmp_path / "s.json", path, "-o", tmp_path / "o.h5"), "s.json")
    stats = tmp_path / "s.json"
    stats.write_text(result.stdout)
    refused(cli("apply", stats, path, "-o", tmp_path / "o.h5"), "external")
    ok = cli("apply", stats, path, "-o", tmp_path / "o.h5", "--allow-external")
    assert ok.exit_code == 0, ok.stderr


def test_external_raw_storage_beside_the_file_is_read(tmp_path):
    raw = tmp_path / "part.bin"
    np.arange(80.0).tofile(raw)
    path = _h5(
        tmp_path / "ext.h5",
        lambda f: f.create_dataset("x", (10, 8), "<f8", external=[("part.bin", 0, 640)]),
    )
    result = cli("fit", path, cwd=tmp_path)  # HDF5 resolves relative names from the cwd
    assert result.exit_code == 0, result.stderr
    (tmp_path / "sub").mkdir()
    refused(cli("fit", path, cwd=tmp_path / "sub"), "which is missing")


def test_external_link_outside_the_directory_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    target = _h5(tmp_path / "target.h5", lambda f: f.create_dataset("x", data=np.ones((5, 2))))
    path = _h5(
        tmp_path / "data" / "link.h5", lambda f: f.__setitem__("x", h5py.ExternalLink(target, "/x"))
    )
    refused(cli("fit", f"{path}:/x"), "external")
    assert cli("fit", f"{path}:/x", "--allow-external").exit_code == 0
    near = _h5(tmp_path / "near.h5", lambda f: f.__setitem__("x", h5py.ExternalLink(target, "/x")))
    assert cli("fit", f"{near}:/x").exit_code == 0


def _vds(path: Path, source: Path) -> Path:
    layout = h5py.VirtualLayout(shape=(5, 2), dtype="f8")
    layout[:] = h5py.VirtualSource(str(source), "x", shape=(5, 2))
    return _h5(path, lambda f: f.create_virtual_dataset("v", layout, fillvalue=0.0))


def test_virtual_dataset_with_a_missing_source_is_refused(tmp_path):
    src = _h5(tmp_path / "src.h5", lambda f: f.create_dataset("x", data=np.full((5, 2), 3.0)))
    path = _vds(tmp_path / "v.h5", src)
    result = cli("fit", path)
    assert result.exit_code == 0 and json.loads(result.stdout)["mean"] == [3.0, 3.0]
    src.unlink()
    refused(cli("fit", path), "src.h5")


def test_virtual_dataset_outside_the_directory_needs_allow_external(tmp_path):
    (tmp_path / "data").mkdir()
    src = _h5(tmp_path / "src.h5", lambda f: f.create_dataset("x", data=np.full((5, 2), 3.0)))
    path = _vds(tmp_path / "data" / "v.h5", src)
    refused(cli("fit", path), "external")
    assert cli("fit", path, "--allow-external").exit_code == 0


def test_soft_link_loop_is_one_error(tmp_path):
    def build(f):
        f["a"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/a")
        f.create_dataset("x", data=np.ones((3, 2)))

    path = _h5(tmp_path / "loop.h5", build)
    refused(cli("fit", f"{path}:/a"), "loop.h5")
    assert cli("fit", path).exit_code == 0


# ---------------------------------------------------------------- HDF5 / Zarr: declared size


def test_unallocated_hdf5_is_refused_at_once(tmp_path):
    path = _h5(
        tmp_path / "huge.h5",
        lambda f: f.create_dataset("x", shape=(10**11, 8), chunks=(4096, 8), dtype="f4"),
    )
    assert path.stat().st_size < 10_000
    line = refused(cli("fit", path), "declares 100000000000 rows but stores only")
    assert "huge.h5:/x" in line
    contiguous = _h5(tmp_path / "c.h5", lambda f: f.create_dataset("x", (10**6, 8), "f4"))
    refused(cli("fit", contiguous), "declares 1000000 rows but stores only 0 bytes")


def test_partly_written_hdf5_is_refused_but_compressed_data_is_read(tmp_path):
    def partly(f):
        f.create_dataset("x", shape=(100_000, 8), chunks=(1000, 8), dtype="f4")[:5000] = 1.0

    refused(cli("fit", _h5(tmp_path / "part.h5", partly)), "stores only")
    zeros = _h5(
        tmp_path / "z.h5",
        lambda f: f.create_dataset(
            "x", data=np.zeros((100_000, 8)), chunks=(1000, 8), compression=9
        ),
    )
    assert zeros.stat().st_size < 100_000  # far less than its 6.4 MB of values
    result = cli("fit", zeros)
    assert result.exit_code == 0, result.stderr


def test_a_huge_storage_chunk_is_refused_before_it_is_read(tmp_path):
    """2 MB of file holding one 1 GiB gzip chunk: memory would follow the file's chunk."""
    import resource
    import zlib

    path = tmp_path / "bigchunk.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", (2**27, 1), "f8", chunks=(2**27, 1), compression="gzip")
        z, zero, parts = zlib.compressobj(), bytes(2**24), []
        for _ in range(64):
            parts.append(z.compress(zero))
        parts.append(z.flush())
        ds.id.write_direct_chunk((0, 0), b"".join(parts))
    assert path.stat().st_size < 4 * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = refused(cli("fit", path, "--chunk-size", "1MB"), "storage chunk")
    assert "bigchunk.h5" in line
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200


def test_damaged_hdf5_is_one_error(tmp_path):
    """Bytes flipped anywhere (metadata included: on main, a damaged symbol table escaped from
    h5py's object visit as a RuntimeError traceback)."""
    from normstat.errors import NormstatError

    def build(f):
        f.create_dataset("g/x", data=np.random.default_rng(0).random((2000, 8)))
        f.create_group("h").attrs["a"] = 1
        f.create_dataset("y", data=np.arange(10.0))

    raw = _h5(tmp_path / "d.h5", build).read_bytes()
    rng = np.random.default_rng(1)
    for i in range(400):
        damaged = bytearray(raw)
        mid = int(rng.integers(0, len(raw)))
        for at in rng.integers(max(mid - 64, 0), min(mid + 64, len(raw)), 8):
            damaged[at] ^= 0xFF
        (tmp_path / "dx.h5").write_bytes(bytes(damaged))
        try:
            normstat.fit(str(tmp_path / "dx.h5"), dataset=None if i % 2 else "/g/x", workers=1)
        except NormstatError as exc:
            assert exc.path == str(tmp_path / "dx.h5")
    damaged = bytearray(raw)
    damaged[1497 - 64 : 1497 + 64] = bytes(128)  # the root group's local heap
    (tmp_path / "heap.h5").write_bytes(bytes(damaged))
    result = cli("fit", tmp_path / "heap.h5")
    if result.exit_code:
        refused(result, "heap.h5", code=result.exit_code)


def test_unallocated_zarr_is_refused_at_once(tmp_path):
    zarr = pytest.importorskip("zarr")
    zarr.create_array(tmp_path / "huge.zarr", shape=(10**12, 8), chunks=(4096, 8), dtype="f4")
    refused(cli("fit", tmp_path / "huge.zarr"), "declares 1000000000000 rows")
    # zeros are legitimately left unstored (write_empty_chunks=False): small arrays are read
    small = zarr.create_array(
        tmp_path / "zeros.zarr", shape=(10_000, 8), chunks=(100, 8), dtype="f4"
    )
    small[:] = 0
    assert cli("fit", tmp_path / "zeros.zarr").exit_code == 0


def test_a_huge_zarr_chunk_is_refused(tmp_path):
    zarr = pytest.importorskip("zarr")
    rows = 2**25 + 2**22  # one chunk of 288 MiB, unwritten (small enough to be read as zeros)
    zarr.create_array(tmp_path / "big.zarr", shape=(rows, 1), chunks=(rows, 1), dtype="f8")
    refused(cli("fit", tmp_path / "big.zarr", "--chunk-size", "1MB"), "storage chunk")


# ------------------------------------------------------------------------------------ NPY


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [((1000, 0), "a sample of no values"), ((10**9, 0, 5), "a sample of no values")],
)
def test_npy_without_values_per_sample_is_one_error(tmp_path, shape, fragment):
    path = tmp_path / "z.npy"
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_1_0(
            fp, {"descr": "<f8", "fortran_order": False, "shape": shape}
        )
    refused(cli("fit", path), fragment)


def test_npy_with_a_negative_dimension_is_one_error(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros((10, 3)))
    (tmp_path / "neg.npy").write_bytes(buf.getvalue().replace(b"(10, 3)", b"(10, -3)"))
    refused(cli("fit", tmp_path / "neg.npy"), "neg.npy")


def _shrinking(path: Path, keep: int):
    """A progress hook that truncates ``path`` to ``keep`` bytes after the first chunk."""

    class Hook:
        def start(self, total, row_bytes=0):
            pass

        def advance(self, n):
            with open(path, "r+b") as fp:
                fp.truncate(keep)

    return Hook()


@pytest.mark.parametrize("fmt", ["npy", "npy-fortran", "hdf5"])
def test_a_file_truncated_during_the_run_is_an_error(tmp_path, fmt):
    """Read through a memory map, a file that shrinks killed the process with SIGBUS."""
    from normstat.errors import DataError

    x = np.random.default_rng(0).random((200_000, 4))
    if fmt == "hdf5":
        path = _h5(tmp_path / "x.h5", lambda f: f.create_dataset("x", data=x))
    else:
        path = tmp_path / "x.npy"
        np.save(path, np.asfortranarray(x) if fmt == "npy-fortran" else x)
    keep = path.stat().st_size // 3
    with pytest.raises(DataError, match="truncated|cannot read") as err:
        normstat.fit(str(path), chunk_size=1000, workers=1, progress=_shrinking(path, keep))
    assert err.value.path == str(path)


# ----------------------------------------------------------------------------- checkpoints


class _Crash(Exception):
    pass


class _CrashAfter:
    """A progress hook that stops the fit after ``k`` chunks (a stand-in for SIGKILL)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def start(self, total, row_bytes=0):
        pass

    def advance(self, n):
        self.k -= 1
        if self.k <= 0:
            raise _Crash


@pytest.fixture
def offset_shards(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 6)) * [1, 2, 3, 4, 5, 6] + 1e6
    paths = []
    for i, part in enumerate(np.array_split(x, 3)):
        paths.append(str(tmp_path / f"s{i}.npy"))
        np.save(paths[-1], part)
    return paths


def _crashed_checkpoint(paths, state, k):
    with pytest.raises(_Crash):
        normstat.fit(
            paths, chunk_size=70, workers=1, checkpoint=state, checkpoint_every=1e-9,
            progress=_CrashAfter(k),
        )  # fmt: skip


@pytest.mark.parametrize("k", [1, 2, 3, 7, 24, 25, 50, 71])
def test_resume_is_bit_identical_to_an_uninterrupted_fit(offset_shards, tmp_path, k):
    whole = normstat.fit(offset_shards, chunk_size=70, workers=2)
    state = str(tmp_path / "state.npz")
    _crashed_checkpoint(offset_shards, state, k)
    resumed = normstat.fit(offset_shards, chunk_size=70, checkpoint=state, resume=True)
    for key in ("count", "nan_count", "mean", "m2", "var", "std", "min", "max"):
        assert np.array_equal(getattr(resumed, key), getattr(whole, key)), key


def test_resume_over_a_swapped_file_of_the_same_size_and_mtime_is_refused(offset_shards, tmp_path):
    from normstat.errors import DataError

    state = str(tmp_path / "state.npz")
    _crashed_checkpoint(offset_shards, state, 30)
    st = os.stat(offset_shards[2])
    x = np.load(offset_shards[2])
    np.save(offset_shards[2], x[::-1])  # same size, other content
    os.utime(offset_shards[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataError, match=r"s2.npy changed since the checkpoint \(ends_sha256\)"):
        normstat.fit(offset_shards, chunk_size=70, checkpoint=state, resume=True)


def _edit_checkpoint(state: str, meta_edit=None, arrays_edit=None) -> None:
    with np.load(state) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if meta_edit:
        meta_edit(meta)
    if arrays_edit:
        arrays_edit(arrays)
    with open(state, "wb") as fp:
        np.savez(fp, meta=np.array(json.dumps(meta)), **arrays)


def _pop(d, k):
    d.pop(k)


@pytest.mark.parametrize(
    "damage",
    [
        ("npy", None, None),
        ("meta", lambda m: _pop(m, "rows_done"), None),
        ("meta", lambda m: m.update(rows_done="abc"), None),
        ("meta", lambda m: m.update(rows_done=-70), None),
        ("meta", lambda m: m.update(rows_done=10**12), None),
        ("meta", lambda m: m["fingerprint"]["sources"][0].pop("path"), None),
        ("meta", lambda m: m.update(fingerprint="x"), None),
        ("meta", lambda m: m.update(levels=[0, 3]), None),
        ("meta", lambda m: m.update(levels="x"), None),
        ("arrays", None, lambda a: a.update({"0_dmean": np.zeros(2)})),
        ("arrays", None, lambda a: a.update({"0_m2": -np.ones_like(a["0_m2"])})),
        ("arrays", None, lambda a: a.update({"0_count": a["0_count"].astype(float)})),
        ("arrays", None, lambda a: _pop(a, "0_min")),
        ("truncated", None, None),
    ],
    ids=[
        "a .npy file", "no rows_done", "rows_done abc", "negative rows_done",
        "rows_done past end", "source without path", "fingerprint not an object",
        "levels increasing", "levels not a list", "wrong length", "negative m2", "float counts",
        "missing field", "truncated",
    ],
)  # fmt: skip
def test_a_damaged_checkpoint_is_one_error_line(offset_shards, tmp_path, damage):
    kind, meta_edit, arrays_edit = damage
    state = tmp_path / "state.npz"
    _crashed_checkpoint(offset_shards, str(state), 30)
    if kind == "npy":
        np.save(tmp_path / "x.npy", np.zeros(3))
        os.replace(tmp_path / "x.npy", state)
    elif kind == "truncated":
        state.write_bytes(state.read_bytes()[:-200])
    else:
        _edit_checkpoint(str(state), meta_edit, arrays_edit)
    args = ["fit", *offset_shards, "--chunk-size", "70", "--checkpoint", state, "--resume"]
    refused(cli(*args), "state.npz")


# ------------------------------------------------------------------- tables and numerics


def test_csv_header_that_is_not_utf8_is_one_error(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"a\xff\xfeb,c\n1,2\n3,4\n")
    refused(cli("fit", tmp_path / "bad.csv"), "bad.csv: not a readable CSV file")


def test_damaged_feather_footer_names_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.feather as pf

    pf.write_feather(pa.table({"a": np.arange(1000.0)}), tmp_path / "ok.feather")
    raw = (tmp_path / "ok.feather").read_bytes()
    (tmp_path / "cut.feather").write_bytes(raw[: len(raw) // 2] + raw[-10:])
    refused(cli("fit", tmp_path / "cut.feather"), "cut.feather: not a readable Arrow IPC")


def test_a_corrupt_parquet_page_is_caught_by_its_checksum(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": np.arange(1000.0), "b": np.arange(1000.0)})
    pq.write_table(table, tmp_path / "ok.parquet", compression="none", write_page_checksum=True)
    raw = bytearray((tmp_path / "ok.parquet").read_bytes())
    at = raw.index(np.float64(500.0).tobytes())
    raw[at + 6 : at + 8] = b"\xf0\x7f"  # 500.0 becomes inf
    (tmp_path / "bad.parquet").write_bytes(bytes(raw))
    refused(cli("fit", tmp_path / "bad.parquet"), "bad.parquet")


@pytest.mark.parametrize(
    "x",
    [
        np.full((1000, 2), 1.7e308),
        np.array([[1.7e308, -1.7e308], [-1.7e308, 1.7e308]] * 10),
        np.full((100_000, 1), 1e305),
    ],
    ids=["constant near max", "alternating", "sum overflows"],
)
def test_values_near_the_float64_limit_are_refused_without_warnings(tmp_path, x):
    np.save(tmp_path / "big.npy", x)
    refused(cli("fit", tmp_path / "big.npy", "-o", tmp_path / "s.json"), "big.npy")
    assert not (tmp_path / "s.json").exists()


def test_large_but_representable_values_are_fitted_exactly_enough(tmp_path):
    x = np.random.default_rng(0).standard_normal((10_000, 2)) * 1e150 + 1e151
    np.save(tmp_path / "x.npy", x)
    result = cli("fit", tmp_path / "x.npy")
    assert result.exit_code == 0
    np.testing.assert_allclose(json.loads(result.stdout)["mean"], x.mean(axis=0), rtol=1e-12)


def test_every_shard_is_held_to_the_storage_chunk_budget(tmp_path):
    zarr = pytest.importorskip("zarr")
    zarr.create_array(tmp_path / "a.zarr", shape=(100, 1), chunks=(10, 1), dtype="f8")[:] = 1.0
    rows = 2**25 + 2**22
    zarr.create_array(tmp_path / "b.zarr", shape=(rows, 1), chunks=(rows, 1), dtype="f8")
    refused(cli("fit", tmp_path / "a.zarr", tmp_path / "b.zarr", "--chunk-size", "1MB"), "b.zarr")


def test_a_feather_decompression_bomb_is_refused_before_it_is_inflated(tmp_path):
    """One zstd record batch of 288 MiB of zeros in a file of a few KB."""
    import resource

    import pyarrow as pa
    import pyarrow.feather as pf

    rows = 2**25 + 2**22
    pf.write_feather(
        pa.table({"a": np.zeros(rows)}), tmp_path / "bomb.feather", compression="zstd",
        chunksize=rows,
    )  # fmt: skip
    assert (tmp_path / "bomb.feather").stat().st_size < 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = refused(cli("fit", tmp_path / "bomb.feather", "--chunk-size", "1MB"), "bomb.feather")
    assert "decompressed" in line
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200
    small = pa.table({"a": np.arange(1000.0)})
    pf.write_feather(small, tmp_path / "ok.feather", compression="zstd", chunksize=100)
    assert cli("fit", tmp_path / "ok.feather").exit_code == 0
