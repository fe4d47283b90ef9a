"""The artifact: exact round trips, the SPEC's keys, and a strict load that names what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import normstat
from normstat import artifact
from normstat.errors import ArtifactError
from tests.conftest import DIGITS

GOLDEN = Path(__file__).parent / "data" / "digits-pixels.json"
SPEC_KEYS = {
    "format",
    "schema_version",
    "normstat_version",
    "created",
    "source",
    "axis",
    "feature_shape",
    "features",
    "ddof",
    "count",
    "nan_count",
    "mean",
    "var",
    "std",
    "min",
    "max",
    "m2",
}


def _awkward_stats() -> normstat.Stats:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 3, 2)) * np.array([1e-300, 1.0, 1e150])[None, :, None]
    x[:, 1, 1] = np.nan  # a feature with no finite value: count 0, null statistics
    x[::7, 0, 0] = np.nan
    return normstat.fit_arrays(x, axis=(1, 2), ddof=1)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_round_trip_is_bit_exact(tmp_path, suffix):
    stats = _awkward_stats()
    path = tmp_path / f"s{suffix}"
    normstat.save(stats, str(path))
    back = normstat.load(str(path))
    for key in ("count", "nan_count", "mean", "var", "std", "min", "max", "m2"):
        a, b = getattr(stats, key), getattr(back, key)
        assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=True), key
        np.testing.assert_array_equal(a, b)
    assert back.feature_shape == (3, 2) and back.axis == (1, 2) and back.ddof == 1


def test_json_has_the_spec_keys_and_null_for_empty_features(tmp_path):
    path = tmp_path / "s.json"
    normstat.save(_awkward_stats(), str(path))
    doc = json.loads(path.read_text())
    assert set(doc) == SPEC_KEYS
    assert doc["format"] == "normstat.stats" and doc["schema_version"] == 1
    assert doc["count"][1][1] == 0 and doc["mean"][1][1] is None and doc["min"][1][1] is None
    assert doc["nan_count"][0][0] == 8
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_scalar_statistics_with_axis_none(tmp_path):
    stats = normstat.fit_arrays(np.arange(10.0).reshape(5, 2), axis=None)
    doc = artifact.to_dict(stats)
    assert doc["axis"] is None and doc["feature_shape"] == [] and doc["mean"] == 4.5


def test_overflowing_statistics_are_refused_not_written_as_null(tmp_path):
    from normstat.errors import DataError

    with pytest.raises(DataError, match=r"feature \[0\] overflow float64"):  # since issue 14
        normstat.fit_arrays(np.array([[1e300], [-1e300]]))
    stats = normstat.fit_arrays(np.array([[1.0], [-1.0]]))
    stats.moments.m2[0] = np.inf  # statistics built some other way
    with pytest.raises(ArtifactError, match=r"feature \[0\] overflow float64"):
        normstat.save(stats, str(tmp_path / "s.json"))
    assert not list(tmp_path.iterdir())


def test_golden_digits_artifact_matches_a_fresh_fit():
    golden = normstat.load(str(GOLDEN))
    fresh = normstat.fit(f"{DIGITS}:/images", axis=(1, 2))
    for key in ("count", "mean", "var", "min", "max"):
        np.testing.assert_allclose(getattr(fresh, key), getattr(golden, key), rtol=1e-12)
    assert golden.source["dtype"] == "uint8" and golden.source["shape"] == [1797, 8, 8]


def _corrupt(tmp_path: Path, edit) -> Path:
    doc = artifact.to_dict(_awkward_stats())
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("m2"), "missing keys: m2"),
        (lambda d: d.update(schema_version=3), "schema_version 3 is not supported"),
        (lambda d: d.update(format="other"), "'format' is 'other'"),
        (lambda d: d.update(mean=[1.0, 2.0]), "'mean' has shape [2], expected feature_shape"),
        (lambda d: d.update(count=[[1, 2], [3, -1], [1, 1]]), "'count' must hold non-negative"),
        (lambda d: d.update(ddof="x"), "'ddof' must be a non-negative integer"),
        (lambda d: d["var"][0].__setitem__(0, 123.0), "'var' disagrees with m2"),
        (lambda d: d.update(axis="last"), "'axis' must be a list of integers"),
        (lambda d: d.update(features=["a"]), "'features' must be null"),
    ],
)
def test_load_names_what_is_wrong(tmp_path, edit, message):
    with pytest.raises(ArtifactError, match=None) as info:
        normstat.load(str(_corrupt(tmp_path, edit)))
    assert message in str(info.value) and "bad.json" in str(info.value)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"mean": NaN}', ""])
def test_load_rejects_non_artifacts(tmp_path, text):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ArtifactError, match="x.json"):
        normstat.load(str(path))


def test_load_rejects_nan_spelled_into_json(tmp_path):
    path = _corrupt(tmp_path, lambda d: None)
    path.write_text(path.read_text().replace("null", "NaN", 1))
    with pytest.raises(ArtifactError, match="NaN is not allowed"):
        normstat.load(str(path))
