"""The CLI through click's CliRunner: every command, and every error the SPEC names, pinned by
exit code and message (one line on stderr, never a traceback)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from tests.conftest import DIGITS, reference


def run(*args: str, ok: bool = True, input: bytes | None = None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in result.stderr
    if ok:
        assert result.exit_code == 0, result.stderr
    return result


def error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.fixture
def images(tmp_path):
    """NHWC float32 images with per-channel offsets, plus labels, in one HDF5 file."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((40, 4, 5, 3)) * [1, 2, 3] + [10, -5, 100]).astype(np.float32)
    path = tmp_path / "imgs.h5"
    with h5py.File(path, "w") as f:
        f.attrs["origin"] = "test"
        ds = f.create_dataset("group/images", data=x, chunks=(8, 4, 5, 3), compression="gzip")
        ds.attrs["layout"] = "NHWC"
        f.create_dataset("labels", data=np.arange(40))
    return path, x


# ------------------------------------------------------------------------------------ fit


def test_fit_to_stdout_is_the_json_artifact(images):
    path, x = images
    out = run("fit", f"{path}:/group/images", "--chunk-size", "7").stdout
    doc = json.loads(out)
    ref = reference(x, (-1,))
    np.testing.assert_allclose(doc["mean"], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(doc["var"], ref["var"], rtol=1e-12)
    assert doc["feature_shape"] == [3] and doc["axis"] == [-1]
    assert doc["source"]["dataset"] == "/group/images" and doc["source"]["shape"] == [40, 4, 5, 3]


@pytest.mark.parametrize("name", ["s.json", "s.npz", "stats"])
def test_fit_output_formats(images, tmp_path, name):
    path, x = images
    out = tmp_path / name
    run("fit", path, "--dataset", "/group/images", "--axis", "1", "--axis", "2", "-o", out)
    stats = normstat.load(str(out)) if name != "stats" else None
    if name == "stats":  # no known suffix: JSON
        stats = normstat.artifact.from_dict(json.loads(out.read_text()))
    np.testing.assert_allclose(stats.mean, reference(x, (1, 2))["mean"], rtol=1e-12)


def test_fit_npy_shards_and_stdin(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 2, 6), dtype=np.uint8)
    np.save(tmp_path / "a.npy", x[:10])
    np.save(tmp_path / "b.npy", x[10:])
    doc = json.loads(run("fit", tmp_path / "a.npy", tmp_path / "b.npy", "--axis", "1").stdout)
    np.testing.assert_allclose(doc["var"], reference(x, (1,))["var"], rtol=1e-12)
    assert doc["source"]["paths"] == [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
    glob_doc = json.loads(run("fit", str(tmp_path / "*.npy"), "--axis", "1").stdout)
    assert glob_doc["mean"] == doc["mean"]
    buf = io.BytesIO()
    np.save(buf, x)
    piped = json.loads(
        run("fit", "-", "--input-format", "npy", "--axis", "1", input=buf.getvalue()).stdout
    )
    np.testing.assert_allclose(piped["m2"], doc["m2"], rtol=1e-12)


def test_fit_single_numeric_dataset_needs_no_name(tmp_path):
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(12.0).reshape(6, 2))
        f.create_dataset("names", data=np.array([b"a", b"b"]))
    doc = json.loads(run("fit", path).stdout)
    assert doc["mean"] == [5.0, 6.0]


def test_fit_errors(images, tmp_path):
    path, _ = images
    msg = error_line(run("fit", path, ok=False), 2)
    assert "/group/images" in msg and "/labels" in msg and "--dataset" in msg
    msg = error_line(run("fit", f"{path}:/nope", ok=False), 2)
    assert "no dataset '/nope'" in msg
    msg = error_line(run("fit", f"{path}:/group", ok=False), 1)
    assert "is a group" in msg
    msg = error_line(run("fit", f"{path}:/group/images", "--axis", "0", ok=False), 2)
    assert "sample axis" in msg
    msg = error_line(run("fit", f"{path}:/group/images", "--axis", "7", ok=False), 2)
    assert "out of range" in msg
    msg = error_line(run("fit", tmp_path / "missing.h5", ok=False), 1)
    assert "missing.h5: no such file" in msg
    (tmp_path / "x.txt").write_text("1,2")
    msg = error_line(run("fit", tmp_path / "x.txt", ok=False), 2)
    assert "x.txt" in msg and "known: hdf5" in msg
    msg = error_line(run("fit", "-", ok=False), 2)
    assert "--input-format" in msg
    msg = error_line(run("fit", f"{path}:/group/images", "--chunk-size", "lots", ok=False), 2)
    assert "--chunk-size" in msg
    strings = tmp_path / "str.h5"
    with h5py.File(strings, "w") as f:
        f.create_dataset("s", data=np.array([b"a", b"b"]))
    msg = error_line(run("fit", f"{strings}:/s", ok=False), 1)
    assert "/s" in msg and "not numeric" in msg
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    msg = error_line(run("fit", tmp_path / "bad.npy", ok=False), 1)
    assert "bad.npy" in msg


def test_fit_shards_that_disagree_name_the_file(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3)))
    np.save(tmp_path / "b.npy", np.zeros((4, 3)))
    np.save(tmp_path / "c.npy", np.zeros((4, 5)))
    msg = error_line(run("fit", *(tmp_path / n for n in ("a.npy", "b.npy", "c.npy")), ok=False), 1)
    assert "c.npy" in msg and "[5]" in msg and "[3]" in msg


def test_nan_and_inf_policies_name_feature_and_row(tmp_path):
    x = np.arange(40.0).reshape(10, 4)
    x[6, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    doc = json.loads(run("fit", tmp_path / "nan.npy").stdout)  # skip (default)
    assert doc["count"] == [10, 10, 9, 10] and doc["nan_count"] == [0, 0, 1, 0]
    assert doc["mean"][2] == pytest.approx(np.nanmean(x[:, 2]), rel=1e-15)
    msg = error_line(
        run("fit", tmp_path / "nan.npy", "--nan", "error", "--chunk-size", "4", ok=False), 1
    )
    assert "NaN at row 6, feature [2]" in msg and "nan.npy" in msg
    x[6, 2] = 1.0
    x[8, 1] = -np.inf
    np.save(tmp_path / "inf.npy", x)
    msg = error_line(run("fit", tmp_path / "inf.npy", "--chunk-size", "3", ok=False), 1)
    assert "infinite value at row 8, feature [1]" in msg


# ---------------------------------------------------------------------------------- apply


@pytest.fixture
def fitted(images, tmp_path):
    path, x = images
    stats = tmp_path / "stats.json"
    run("fit", f"{path}:/group/images", "-o", stats)
    return path, x, stats


def test_apply_hdf5_keeps_other_datasets_and_records_statistics(fitted, tmp_path):
    path, x, stats = fitted
    out = tmp_path / "out.h5"
    run("apply", stats, f"{path}:/group/images", "-o", out, "--chunk-size", "9")
    ref = reference(x, (-1,))
    want = (x.astype(np.float64) - ref["mean"]) / np.sqrt(ref["var"])
    with h5py.File(out, "r") as f:
        got = f["group/images"]
        np.testing.assert_allclose(got[...], want, rtol=1e-5, atol=1e-5)
        assert got.dtype == np.float32 and got.chunks == (8, 4, 5, 3)
        assert got.compression == "gzip"
        assert got.attrs["layout"] == "NHWC" and got.attrs["normstat_method"] == "zscore"
        np.testing.assert_allclose(got.attrs["normstat_shift"], ref["mean"], rtol=1e-12)
        assert json.loads(got.attrs["normstat_stats"])["format"] == "normstat.stats"
        np.testing.assert_array_equal(f["labels"][...], np.arange(40))
        assert f.attrs["origin"] == "test"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), lambda x, r: (x - r["mean"]) / np.sqrt(r["var"])),
        (("--method", "center"), lambda x, r: x - r["mean"]),
        (("--method", "minmax"), lambda x, r: (x - r["min"]) / (r["max"] - r["min"])),
        (
            ("--method", "minmax", "--range", "-1", "1"),
            lambda x, r: (x - r["min"]) / (r["max"] - r["min"]) * 2 - 1,
        ),
    ],
)
def test_apply_methods_to_npy_and_inverse(fitted, tmp_path, args, expected):
    path, x, stats = fitted
    out = tmp_path / "out.npy"
    run("apply", stats, f"{path}:/group/images", "-o", out, "--dtype", "float64", *args)
    got = np.load(out)
    np.testing.assert_allclose(
        got, expected(x.astype(np.float64), reference(x, (-1,))), rtol=1e-12, atol=1e-12
    )
    back = tmp_path / "back.npy"
    run("apply", stats, out, "-o", back, "--inverse", "--dtype", "float64", *args)
    np.testing.assert_allclose(np.load(back), x, rtol=1e-12, atol=1e-9)


def test_apply_to_stdout_writes_npy(fitted):
    path, x, stats = fitted
    res = run("apply", stats, f"{path}:/group/images", "-o", "-", "--chunk-size", "6")
    got = np.load(io.BytesIO(res.stdout_bytes))
    assert got.shape == x.shape and got.dtype == np.float32
    r = reference(x, (-1,))
    np.testing.assert_allclose(got, (x - r["mean"]) / np.sqrt(r["var"]), rtol=1e-5, atol=1e-5)


def test_apply_refusals_leave_no_output(fitted, tmp_path):
    path, x, stats = fitted
    out = tmp_path / "out.npy"
    out.write_bytes(b"keep me")
    msg = error_line(run("apply", stats, f"{path}:/group/images", "-o", out, ok=False), 2)
    assert "--force" in msg and out.read_bytes() == b"keep me"
    run("apply", stats, f"{path}:/group/images", "-o", out, "--force")
    assert np.load(out).shape == x.shape
    before = path.read_bytes()
    msg = error_line(
        run("apply", stats, f"{path}:/group/images", "-o", path, "--force", ok=False), 2
    )
    assert "input" in msg and path.read_bytes() == before
    np.save(tmp_path / "wrong.npy", np.zeros((5, 4)))
    msg = error_line(
        run("apply", stats, tmp_path / "wrong.npy", "-o", tmp_path / "o2.npy", ok=False), 1
    )
    assert "[4]" in msg and "[3]" in msg and not (tmp_path / "o2.npy").exists()
    msg = error_line(
        run(
            "apply",
            stats,
            f"{path}:/group/images",
            "-o",
            tmp_path / "o3.npy",
            "--dtype",
            "int8",
            ok=False,
        ),
        2,
    )
    assert "floating" in msg
    msg = error_line(
        run("apply", tmp_path / "none.json", path, "-o", tmp_path / "o4.npy", ok=False), 1
    )
    assert "none.json" in msg
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failure_mid_write_leaves_no_partial_output(tmp_path):
    x = np.arange(60.0).reshape(20, 3)
    stats = tmp_path / "s.json"
    np.save(tmp_path / "a.npy", x)
    run("fit", tmp_path / "a.npy", "-o", stats)
    y = x.copy()
    y[15] = np.nan  # fine for apply; but truncate the second shard to make reading fail
    np.save(tmp_path / "b.npy", y)
    raw = (tmp_path / "b.npy").read_bytes()
    (tmp_path / "b.npy").write_bytes(raw[:-100])
    res = run(
        "apply", stats, tmp_path / "a.npy", tmp_path / "b.npy", "-o", tmp_path / "o.npy", ok=False
    )
    error_line(res, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npy", "s.json"]


# ------------------------------------------------------------------- show, merge, export


def test_show_table_json_and_all(tmp_path):
    stats = tmp_path / "d.json"
    run("fit", f"{DIGITS}:/images", "--axis", "1", "--axis", "2", "-o", stats)
    table = run("show", stats).stdout
    header = table.splitlines()[0].split()
    assert header == ["feature", "count", "nan_count", "mean", "std", "min", "max"]
    assert "use --all" in table and "[0, 1]" in table
    assert "[7, 7]" in run("show", stats, "--all").stdout
    assert "use --all" not in run("show", stats, "--all").stdout
    doc = json.loads(run("show", stats, "--json").stdout)
    assert doc["mean"] == json.loads(stats.read_text())["mean"]


def test_merge_of_shard_fits_equals_fit_of_whole(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((90, 4)) * 3 + 1e6
    parts = []
    for i, sl in enumerate((slice(0, 13), slice(13, 50), slice(50, 90))):
        np.save(tmp_path / f"p{i}.npy", x[sl])
        run("fit", tmp_path / f"p{i}.npy", "-o", tmp_path / f"p{i}.json")
        parts.append(tmp_path / f"p{i}.json")
    run("merge", *parts, "-o", tmp_path / "m.npz")
    merged = normstat.load(str(tmp_path / "m.npz"))
    ref = reference(x, (-1,))
    np.testing.assert_allclose(merged.mean, ref["mean"], rtol=1e-14)
    np.testing.assert_allclose(merged.var, ref["var"], rtol=1e-9)
    assert merged.source["shape"] == [90, 4] and len(merged.source["paths"]) == 3
    np.save(tmp_path / "other.npy", x[:, :2])
    run("fit", tmp_path / "other.npy", "-o", tmp_path / "other.json")
    msg = error_line(run("merge", parts[0], tmp_path / "other.json", ok=False), 1)
    assert "other.json" in msg and "feature_shape" in msg


def test_export_for_each_framework(fitted):
    _, x, stats = fitted
    r = reference(x, (-1,))
    keras = json.loads(run("export", stats, "--to", "keras").stdout)
    assert keras["axis"] == [-1]
    np.testing.assert_allclose(keras["variance"], r["var"], rtol=1e-12)
    torch = json.loads(run("export", stats, "--to", "torch").stdout)
    np.testing.assert_allclose(torch["std"], np.sqrt(r["var"]), rtol=1e-12)
    sk = json.loads(run("export", stats, "--to", "sklearn").stdout)
    assert sk["n_samples_seen_"] == 40 * 4 * 5 and sk["n_features_in_"] == 3
    np.testing.assert_allclose(sk["mean_"], r["mean"], rtol=1e-12)
    np.testing.assert_allclose(sk["scale_"], np.sqrt(r["var"]), rtol=1e-12)
    assert run("export", stats, "--to", "jax", ok=False).exit_code == 2


def test_version_and_help():
    assert normstat.__version__ in run("--version").stdout
    for cmd in ("fit", "apply", "show", "merge", "export"):
        assert "Python:" in run(cmd, "--help").stdout


# ------------------------------------------------------------- the installed command


@pytest.mark.skipif(shutil.which("normstat") is None, reason="normstat is not installed")
def test_installed_command_runs_the_readme_job(tmp_path):
    env = dict(os.environ)
    stats, out = tmp_path / "s.json", tmp_path / "d.h5"
    subprocess.run(
        ["normstat", "fit", f"{DIGITS}:/images", "--axis", "1", "--axis", "2", "-o", stats],
        check=True,
        env=env,
        capture_output=True,
    )
    proc = subprocess.run(
        ["normstat", "apply", stats, f"{DIGITS}:/images", "-o", out],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        assert f["images"].shape == (1797, 8, 8) and "labels" in f
    bad = subprocess.run(
        ["normstat", "fit", str(tmp_path / "nope.npy")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"Error: {tmp_path / 'nope.npy'}: no such file"


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "normstat", "--version"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 0 and normstat.__version__ in proc.stdout


def test_ctrl_c_mid_apply_leaves_no_partial_file(fitted, tmp_path, monkeypatch):
    path, _, stats = fitted
    from normstat.sinks import npy as npy_sink

    calls = {"n": 0}
    real_write = npy_sink.NpyWriter.write

    def interrupted(self, block):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_write(self, block)

    monkeypatch.setattr(npy_sink.NpyWriter, "write", interrupted)
    res = run(
        "apply",
        stats,
        f"{path}:/group/images",
        "-o",
        tmp_path / "o.npy",
        "--chunk-size",
        "8",
        ok=False,
    )
    assert res.exit_code == 130 and calls["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs.h5", "stats.json"]
