"""A damaged NPZ artifact is refused by every command that reads one (show, apply, merge,
export), now that a loaded artifact's arrays are taken over rather than copied and the range
checks run in blocks of features; and taking them over changes no value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat import artifact, report
from normstat.cli import main
from normstat.errors import NormstatWarning

FEATURES = 70_000  # more than one block of the range checks (2**16 features)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, FEATURES))
    x[:, 3] = 2.5  # a constant feature
    x[:, 69_999] = -1.0  # another, in the second block
    d = tmp_path_factory.mktemp("npz")
    np.save(d / "x.npy", x)
    stats = normstat.fit_arrays(x, axis=1)
    artifact.save(stats, str(d / "good.npz"))
    return d, x


def _damaged(d: Path, name: str, change) -> Path:
    with np.load(d / "good.npz") as z:
        members = {k: z[k] for k in z.files}
    change(members)
    path = d / f"{name}.npz"
    np.savez(path, **members)
    return path


def _outside(m: dict) -> None:
    m["mean"] = m["mean"].copy()
    m["mean"][69_000] = m["max"][69_000] + 1.0


DAMAGE = {
    "missing": (lambda m: m.pop("m2"), "missing keys: m2"),
    "shape": (lambda m: m.update(mean=m["mean"][:-1]), "'mean' has shape"),
    "nan-count": (
        lambda m: m.update(count=np.where(np.arange(FEATURES) == 9, np.nan, m["count"])),
        "'count' must hold non-negative integers",
    ),
    "negative-count": (
        lambda m: m.update(count=m["count"].astype(np.int64) - (np.arange(FEATURES) == 9)),
        None,  # a count of 3 beside m2, min and max of 4 values: refused for one reason or other
    ),
    "mean-outside": (_outside, "'mean' lies outside \\[min, max\\] for feature 69000"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_npz_is_refused_by_load(fitted, damage):
    d, _ = fitted
    change, message = DAMAGE[damage]
    path = _damaged(d, damage, change)
    with pytest.raises(normstat.ArtifactError, match=message) as info:
        artifact.load(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("command", ["show", "apply", "merge", "export"])
@pytest.mark.parametrize("damage", ["missing", "shape", "nan-count", "mean-outside"])
def test_a_damaged_npz_is_refused_by_each_command(fitted, damage, command, tmp_path):
    d, _ = fitted
    change, message = DAMAGE[damage]
    path = _damaged(d, damage, change)
    argv = {
        "show": ["show", path],
        "apply": ["apply", path, d / "x.npy", "-o", tmp_path / "out.npy"],
        "merge": ["merge", d / "good.npz", path, "-o", tmp_path / "m.npz"],
        "export": ["export", path, "--to", "keras"],
    }[command]
    result = CliRunner().invoke(main, [str(a) for a in argv])
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    assert path.name in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_loaded_npz_has_the_bits_of_a_copied_one(fitted):
    d, x = fitted
    loaded = artifact.load(str(d / "good.npz"))
    with np.load(d / "good.npz") as z:
        doc = {**json.loads(str(z["meta"])), **{k: z[k] for k in z.files if k != "meta"}}
    copied = artifact.from_dict(doc)
    for k in ("count", "nan_count", "mean", "var", "std", "min", "max"):
        a, b = getattr(loaded, k), getattr(copied, k)
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    assert np.allclose(loaded.mean, x.mean(axis=0), rtol=1e-12, atol=1e-15)
    assert np.allclose(loaded.var, x.var(axis=0), rtol=1e-10, atol=1e-15)


def test_from_dict_never_aliases_the_callers_arrays(fitted):
    """A caller's dict is copied: merging the loaded statistics in place leaves it as it was."""
    d, _ = fitted
    with np.load(d / "good.npz") as z:
        doc = {**json.loads(str(z["meta"])), **{k: z[k] for k in z.files if k != "meta"}}
    before = {k: doc[k].copy() for k in ("count", "mean", "m2", "min", "max")}
    stats = artifact.from_dict(doc)
    stats.moments.merge_into(artifact.load(str(d / "good.npz")).moments)
    for k, v in before.items():
        assert np.array_equal(doc[k], v), k


def test_the_overview_counts_the_notes(fitted, tmp_path):
    d, x = fitted
    x = x.copy()
    x[:, 10] = np.nan  # an empty feature
    with pytest.warns(NormstatWarning):
        stats = normstat.fit_arrays(x, axis=1)
    notes = report.notes(stats)
    assert (notes[3], notes[10], notes[69_999]) == ("constant", "empty", "constant")
    assert sum(n != "" for n in notes) == 3  # the features made so above, by hand
    assert "2 constant, 0 near-constant, 1 empty" in report._overview(stats)
    artifact.save(stats, str(tmp_path / "e.npz"))
    result = CliRunner().invoke(main, ["show", str(tmp_path / "e.npz")])
    assert result.exit_code == 0, result.stderr
    assert "2 constant, 0 near-constant, 1 empty" in result.stdout
