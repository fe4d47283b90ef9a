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
