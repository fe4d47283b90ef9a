"""Corrupt, truncated, mislabelled and hostile inputs: one clear line naming the file, exit 1,
never a traceback (through the installed command) — and fuzzing of the artifact loader and the
NPY reader, which may only ever raise normstat's own errors."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normstat
from normstat import artifact
from normstat.errors import NormstatError

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _valid_h5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.random.default_rng(0).standard_normal((2000, 8)))


def _valid_artifact_text() -> str:
    return artifact.dumps(normstat.fit_arrays(np.arange(12.0).reshape(4, 3)))


def _case_files(d: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (normstat arguments, a fragment the one error line must contain)."""
    (d / "empty.npy").write_bytes(b"")
    (d / "empty.h5").write_bytes(b"")
    _valid_h5(d / "whole.h5")
    raw = (d / "whole.h5").read_bytes()
    (d / "half.h5").write_bytes(raw[: len(raw) // 2])
    buf = io.BytesIO()
    np.save(buf, np.zeros((10, 3)))
    npy = buf.getvalue()
    (d / "lying.npy").write_bytes(npy.replace(b"(10, 3)", b"(99, 3)"))
    (d / "objects.npy").write_bytes(npy.replace(b"'<f8'", b"'|O' "))
    (d / "text.npy").write_bytes(b"a,b\n1,2\n")
    (d / "csv-bytes.h5").write_bytes(b"a,b\n1,2\n")
    with h5py.File(d / "groups.h5", "w") as f:
        f.create_group("g").create_dataset("x", data=np.zeros((3, 2)))
        f.create_dataset("s", data=np.array([b"a", b"b"]))
    (d / "notjson.json").write_text("{")
    (d / "empty.json").write_text("")
    (d / "nan.json").write_text(_valid_artifact_text().replace("0.0", "NaN", 1))
    doc = json.loads(_valid_artifact_text())
    doc.pop("mean")
    (d / "nomean.json").write_text(json.dumps(doc))
    doc = json.loads(_valid_artifact_text())
    doc["schema_version"] = 99
    (d / "future.json").write_text(json.dumps(doc))
    doc = json.loads(_valid_artifact_text())
    doc["var"] = doc["var"][:2]
    (d / "short.json").write_text(json.dumps(doc))
    np.save(d / "ok.npy", np.zeros((4, 3)))
    return {
        "empty npy": (["fit", "empty.npy"], "empty.npy: not a readable .npy file"),
        "empty h5": (["fit", "empty.h5"], "empty.h5: not a readable HDF5 file"),
        "half h5": (["fit", "half.h5:/x"], "half.h5"),
        "lying npy": (["fit", "lying.npy"], "lying.npy: file is truncated"),
        "object npy": (["fit", "objects.npy"], "objects.npy"),
        "text npy": (["fit", "text.npy"], "text.npy: not a readable .npy file"),
        "csv named h5": (["fit", "csv-bytes.h5"], "csv-bytes.h5: not a readable HDF5 file"),
        "group": (["fit", "groups.h5:/g"], "groups.h5:/g: is a group, expected a dataset"),
        "strings": (["fit", "groups.h5:/s"], "groups.h5:/s: dtype |S1 is not numeric"),
        "not json": (["show", "notjson.json"], "notjson.json: not a normstat JSON"),
        "empty json": (["show", "empty.json"], "empty.json: not a normstat JSON"),
        "NaN in json": (["show", "nan.json"], "nan.json: not a normstat JSON"),
        "missing key": (["show", "nomean.json"], "nomean.json: missing keys: mean"),
        "schema": (
            ["apply", "future.json", "ok.npy", "-o", "o.npy"],
            "future.json: schema_version 99 is not supported",
        ),
        "short array": (
            ["export", "short.json", "--to", "torch"],
            "short.json: 'var' has shape [2], expected feature_shape [3]",
        ),
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    return d, _case_files(d)


@pytest.mark.skipif(shutil.which("normstat") is None, reason="needs the installed command")
@pytest.mark.parametrize("name", list(_case_files(Path(tempfile.mkdtemp()))))
def test_hostile_input_gets_one_line(cases, name):
    d, table = cases
    args, fragment = table[name]
    before = sorted(p.name for p in d.iterdir())
    proc = subprocess.run(["normstat", *args], cwd=d, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert fragment in lines[0]
    assert sorted(p.name for p in d.iterdir()) == before  # nothing written


# ------------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=600))
def test_artifact_loader_on_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        for name in ("a.json", "a.npz"):
            path = Path(d) / name
            path.write_bytes(data)
            with pytest.raises(NormstatError):
                normstat.load(str(path))


@FUZZ
@given(st.data())
def test_artifact_loader_on_mutated_files(data):
    text = _valid_artifact_text()
    pos = data.draw(st.integers(0, len(text) - 1))
    cut = data.draw(st.integers(0, 20))
    insert = data.draw(st.text(alphabet='0123456789.-e"[]{},:naNulltrfs ', max_size=8))
    mutated = text[:pos] + insert + text[pos + cut :]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.json"
        path.write_text(mutated)
        try:
            stats = normstat.load(str(path))
        except NormstatError:
            return
    # it loaded: then it is a consistent artifact, and says what the file says
    doc = json.loads(mutated)
    np.testing.assert_array_equal(stats.count, np.array(doc["count"]))
    np.testing.assert_allclose(stats.var, np.array(doc["var"], dtype=float), rtol=1e-9)


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(1).standard_normal((6, 2)))
    return buf.getvalue()


@FUZZ
@given(st.data())
def test_npy_reader_on_mutated_files(data):
    raw = bytearray(_npy_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.npy"
        path.write_bytes(bytes(raw))
        try:
            stats = normstat.fit(str(path), workers=1)
        except NormstatError:
            return
        try:
            ref = np.load(path, allow_pickle=False)
        except Exception:
            pytest.fail("normstat read a file that numpy itself rejects")
    # it read the file: the numbers must be those of the array numpy sees in it
    ref2 = ref.reshape(ref.shape[0], -1) if ref.ndim > 1 else ref.reshape(-1, 1)
    ref2 = ref2.astype(np.float64)
    finite = np.isfinite(ref2)
    if ref.ndim >= 2 and finite.all():
        with np.errstate(all="ignore"):
            want = ref2.reshape(ref.shape).astype(np.float64)
        np.testing.assert_allclose(
            stats.mean, want.mean(axis=tuple(range(want.ndim - 1))), rtol=1e-9, atol=1e-300
        )


@FUZZ
@given(st.data())
def test_npy_stream_reader_on_mutated_bytes(data):
    from normstat.sources.npy import NpyStream

    raw = bytearray(_npy_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        src = NpyStream(io.BytesIO(bytes(raw)))
        got = np.concatenate([c.data for c in src.chunks(4)]) if src.shape[0] else None
    except NormstatError:
        return
    ref = np.load(io.BytesIO(bytes(raw)), allow_pickle=False)
    if got is not None:
        np.testing.assert_array_equal(got, ref)
