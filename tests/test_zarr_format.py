"""Zarr arrays as a source and as an ``apply`` output, on the local engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main

zarr = pytest.importorskip("zarr")


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.normal(2e5, 0.5, (130, 3, 4)).astype(np.float32)
    labels = np.arange(130, dtype=np.int64)
    root = str(tmp_path / "data.zarr")
    a = zarr.open_array(
        store=root, mode="w", path="train/x", shape=x.shape, chunks=(16, 3, 4), dtype=x.dtype
    )
    a[:] = x
    b = zarr.open_array(
        store=root, mode="a", path="train/y", shape=labels.shape, chunks=(64,), dtype=labels.dtype
    )
    b[:] = labels
    return root, x, labels


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_fit_a_zarr_array_in_a_group_equals_numpy(store):
    root, x, _ = store
    stats = normstat.fit(f"{root}:/train/x")
    rows = x.astype(np.float64).reshape(-1, 4)
    np.testing.assert_allclose(stats.mean, rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.var, rows.var(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(stats.count, [130 * 3] * 4)
    assert stats.source["dataset"] == "/train/x"
    assert normstat.fit(root, dataset="/train/y").mean == pytest.approx(64.5)


def test_a_store_with_several_arrays_needs_a_choice_and_lists_them(store):
    root, _, _ = store
    r = _invoke("fit", root)
    assert r.exit_code == 2
    assert "numeric arrays: /train/x, /train/y" in r.stderr
    r = _invoke("fit", f"{root}:/train/nope")
    assert r.exit_code == 2 and "no array '/train/nope'" in r.stderr


def test_a_store_that_is_one_array_needs_no_name(tmp_path):
    path = str(tmp_path / "one.zarr")
    a = zarr.open_array(store=path, mode="w", shape=(10, 2), chunks=(4, 2), dtype="i4")
    a[:] = np.arange(20).reshape(10, 2)
    stats = normstat.fit(path)
    np.testing.assert_array_equal(stats.mean, [9.0, 10.0])
    assert stats.source["dataset"] is None


def test_chunks_follow_zarr_chunks(store):
    root, _, _ = store
    (src,) = normstat.sources.open_sources([f"{root}:/train/x"])
    assert (
        src.preferred_rows(100) == 16 and src.preferred_rows(50 * 48) == 48
    )  # 50 rows of 48 bytes, down to 3 chunks
    src.close()


def test_apply_writes_a_zarr_store_like_the_npy_output(store, tmp_path):
    root, x, _ = store
    normstat.save(normstat.fit(f"{root}:/train/x", axis=(1, 2)), str(tmp_path / "s.json"))
    r = _invoke(
        "apply",
        str(tmp_path / "s.json"),
        f"{root}:/train/x",
        "-o",
        str(tmp_path / "out.zarr"),
        "-q",
    )
    assert r.exit_code == 0, r.output
    r = _invoke(
        "apply", str(tmp_path / "s.json"), f"{root}:/train/x", "-o", str(tmp_path / "out.npy"), "-q"
    )
    assert r.exit_code == 0, r.output
    out = zarr.open(str(tmp_path / "out.zarr"), mode="r")["train/x"]
    np.testing.assert_array_equal(out[:], np.load(tmp_path / "out.npy"))
    assert out.chunks == (16, 3, 4) and out.dtype == np.float32
    xs = x.astype(np.float64)
    want = (xs - xs.mean(axis=0)) / xs.std(axis=0)
    np.testing.assert_allclose(out[:], want, rtol=1e-4, atol=1e-4)
    assert out.attrs["normstat_method"] == "zscore"
    assert json.loads(out.attrs["normstat_stats"])["axis"] == [1, 2]


def test_zarr_output_is_atomic_and_needs_force_to_replace(store, tmp_path):
    root, _, _ = store
    normstat.save(normstat.fit(f"{root}:/train/x"), str(tmp_path / "s.json"))
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "keep").write_text("old")
    args = ["apply", str(tmp_path / "s.json"), f"{root}:/train/x", "-o", str(out), "-q"]
    r = _invoke(*args)
    assert r.exit_code == 2 and "output exists" in r.stderr
    assert (out / "keep").exists()
    r = _invoke(*args, "--force")
    assert r.exit_code == 0
    assert not (out / "keep").exists()
    assert zarr.open(str(out), mode="r")["train/x"].shape == (130, 3, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zarr", "out.zarr", "s.json"]
