"""Wide artifacts (many features): the JSON is written one key at a time, and read back with
numpy's number parser once it is large; both give the same floats as the strict ``json`` path."""

from __future__ import annotations

import json

import numpy as np
import pytest

import normstat
from normstat import artifact
from normstat.errors import ArtifactError, NormstatWarning

FIELDS = ("count", "nan_count", "mean", "var", "min", "max", "m2")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 40_000)) * 10.0 ** rng.integers(-100, 100, 40_000)
    x[:, 7] = np.nan  # an empty feature: null statistics
    with pytest.warns(NormstatWarning):
        stats = normstat.fit_arrays(x, axis=1)
    path = tmp_path_factory.mktemp("wide") / "s.json"
    artifact.save(stats, str(path))
    assert path.stat().st_size > artifact._FAST_BYTES  # the fast path is taken
    return path


def test_the_fast_reader_gives_the_strict_readers_floats(wide):
    fast = artifact.load(str(wide))
    strict = artifact.from_dict(json.loads(wide.read_text()))
    for k in FIELDS:
        a, b = getattr(fast, k), getattr(strict, k)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), k


def test_a_damaged_wide_file_is_still_refused_by_name(wide, tmp_path):
    text = wide.read_text().replace('"mean": [', '"mean": ["x", ', 1)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ArtifactError, match="mean"):
        artifact.load(str(bad))
