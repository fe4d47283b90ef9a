"""Resumable fits: a fit killed part-way resumes from its checkpoint to the same statistics as an
uninterrupted run, and refuses to resume over changed data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import CrashAfter

import normstat
from normstat.errors import DataError, UsageError


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3000, 5)) * [1, 2, 3, 4, 5] + 1e6
    paths = []
    for i, part in enumerate(np.array_split(x, 3)):
        paths.append(str(tmp_path / f"s{i}.npy"))
        np.save(paths[-1], part)
    return x, paths


def _crash(paths, state, at, **kw):
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            paths,
            chunk_size=64,
            workers=1,
            checkpoint=state,
            checkpoint_every=1e-9,
            progress=CrashAfter(at),
            **kw,
        )


def test_resume_after_crash_equals_uninterrupted(shards, tmp_path):
    x, paths = shards
    state = str(tmp_path / "state.npz")
    whole = normstat.fit(paths, chunk_size=64)
    _crash(paths, state, at=1500)  # part-way through the second shard
    assert os.path.exists(state)
    resumed = normstat.fit(paths, chunk_size=64, checkpoint=state, resume=True)
    np.testing.assert_array_equal(resumed.count, whole.count)
    np.testing.assert_allclose(resumed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(resumed.var, whole.var, rtol=1e-12)
    np.testing.assert_array_equal(resumed.min, x.min(axis=0))
    assert not os.path.exists(state)  # removed once the fit completed


def test_resume_refuses_changed_data_and_settings(shards, tmp_path):
    _, paths = shards
    state = str(tmp_path / "state.npz")
    _crash(paths, state, at=700)
    with pytest.raises(UsageError, match="add --resume"):
        normstat.fit(paths, chunk_size=64, checkpoint=state)
    with pytest.raises(DataError, match="chunk_rows"):
        normstat.fit(paths, chunk_size=65, checkpoint=state, resume=True)
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"s2.npy changed since the checkpoint \(mtime_ns\)"):
        normstat.fit(paths, chunk_size=64, checkpoint=state, resume=True)
    with pytest.raises(UsageError, match="--resume needs --checkpoint"):
        normstat.fit(paths, resume=True)


@pytest.mark.skipif(shutil.which("normstat") is None, reason="needs the installed command")
def test_sigkill_then_resume_through_the_cli(tmp_path):
    rng = np.random.default_rng(12)
    data = tmp_path / "big.npy"
    rows = 1_000_000
    with open(data, "wb") as fp:
        np.lib.format.write_array_header_1_0(
            fp, {"descr": "<f8", "fortran_order": False, "shape": (rows, 4)}
        )
        for _ in range(4):
            fp.write((rng.standard_normal((rows // 4, 4)) * 5 + 1e6).tobytes())
    args = [
        "normstat",
        "fit",
        str(data),
        "--chunk-size",
        "100",
        "--workers",
        "1",
        "--checkpoint",
        "state.npz",
        "--checkpoint-every",
        "0.1",
        "-q",
        "-o",
        "out.json",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "state.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the fit finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out.json").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") and "state" not in p]
    subprocess.run([*args, "--resume"], cwd=tmp_path, check=True)
    resumed = normstat.load(str(tmp_path / "out.json"))
    whole = normstat.fit(str(data))
    np.testing.assert_array_equal(resumed.count, whole.count)
    np.testing.assert_allclose(resumed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(resumed.var, whole.var, rtol=1e-12)
    assert not (tmp_path / "state.npz").exists()


def test_stdin_cannot_be_checkpointed():
    with pytest.raises(UsageError, match="stdin"):
        normstat.fit("-", input_format="npy", checkpoint="x.npz")


def _keyed_table(tmp_path):
    """Episodes of different sizes and offsets (one far away), NaN, zero weights, string keys."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    n = 3000
    ep = np.sort(rng.integers(0, 30, n))
    a = rng.normal(0, 1 + ep % 4, n) + np.where(ep == 7, 1e6, ep * 10.0)
    a[rng.random(n) < 0.05] = np.nan
    b = rng.normal(3, 2, n).astype(np.float32)
    w = rng.random(n) * 3
    w[rng.random(n) < 0.1] = 0.0
    speaker = np.array([f"spk{k:02d}" for k in rng.integers(0, 12, n)])
    table = pa.table({"episode_index": ep, "speaker": speaker, "a": a, "b": b, "w": w})
    path = str(tmp_path / "episodes.parquet")
    pq.write_table(table, path, row_group_size=250)
    return table.to_pandas(), path


@pytest.mark.parametrize(
    "keyed",
    [
        {"by": "episode_index"},
        {"weights": "w"},
        {"by": "episode_index", "weights": "w"},
        {"by": "speaker", "weights": "w"},
        {"by": "episode_index", "quantiles": "robust"},
    ],
)
def test_resume_of_a_fit_by_group_or_weighted_equals_uninterrupted_bit_for_bit(tmp_path, keyed):
    df, path = _keyed_table(tmp_path)
    state = str(tmp_path / "state.npz")
    whole = normstat.fit(path, chunk_size=64, **keyed)
    _crash(path, state, at=1700, **keyed)
    assert os.path.exists(state)
    resumed = normstat.fit(path, chunk_size=64, checkpoint=state, resume=True, **keyed)
    assert not os.path.exists(state)
    for k in ("count", "nan_count", "mean", "var", "min", "max"):  # bit for bit
        assert np.array_equal(getattr(resumed, k), getattr(whole, k), equal_nan=True), k
    if "weights" in keyed:
        assert np.array_equal(resumed.moments.weight, whole.moments.weight)
    if "quantiles" in keyed:
        assert np.array_equal(resumed.quantiles, whole.quantiles, equal_nan=True)
    if "by" in keyed:
        assert np.array_equal(resumed.group_keys, whole.group_keys)
        g, h = resumed.by_group(), whole.by_group()
        for k in ("count", "nan_count", "mean", "var", "min", "max"):
            assert np.array_equal(getattr(g, k), getattr(h, k), equal_nan=True), k
        # and right: against pandas (weighted: numpy's average) per group
        for i, key in enumerate(resumed.group_keys):
            rows = df[df[keyed["by"]] == key]
            for j, c in enumerate(resumed.features):
                x = rows[c].to_numpy(np.float64)
                wt = rows.w.to_numpy() if "weights" in keyed else np.ones(len(x))
                ok = ~np.isnan(x) & (wt > 0)
                if not ok.any():
                    continue
                m = np.average(x[ok], weights=wt[ok])
                v = np.average((x[ok] - m) ** 2, weights=wt[ok])
                np.testing.assert_allclose(g.mean[i, j], m, rtol=1e-12, atol=1e-9)
                np.testing.assert_allclose(g.var[i, j], v, rtol=1e-8, atol=1e-12)


def test_resume_refuses_another_by_or_weights_and_a_damaged_group_state(tmp_path):
    _, path = _keyed_table(tmp_path)
    state = str(tmp_path / "state.npz")
    _crash(path, state, at=1700, by="episode_index", weights="w")
    with pytest.raises(DataError, match="--resume needs the same by"):
        normstat.fit(path, chunk_size=64, checkpoint=state, resume=True, by="speaker", weights="w")
    with pytest.raises(DataError, match="--resume needs the same (features|weights)"):
        normstat.fit(path, chunk_size=64, checkpoint=state, resume=True, by="episode_index")
    # a group's count changed: the groups no longer add up to the state
    with np.load(state) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["0_by_count"] = arrays["0_by_count"].copy()
    arrays["0_by_count"][0, 0] += 1
    np.savez(state, **arrays)
    with pytest.raises(DataError, match="do not add up"):
        normstat.fit(
            path, chunk_size=64, checkpoint=state, resume=True, by="episode_index", weights="w"
        )
