"""The CIFAR recipes of docs/recipes.md: channels-last and channels-first give the same numbers."""

from __future__ import annotations

import json

import h5py
import numpy as np
from click.testing import CliRunner

from normstat.cli import main


def test_channels_last_and_first_agree(tmp_path):
    rng = np.random.default_rng(4)
    nhwc = rng.integers(0, 256, size=(300, 32, 32, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "cifar.h5", "w") as f:
        f["train/images"] = nhwc
    np.save(tmp_path / "cifar-nchw.npy", nhwc.transpose(0, 3, 1, 2))
    runner = CliRunner()
    last = tmp_path / "last.json"
    first = tmp_path / "first.json"
    cmds = [
        ["fit", f"{tmp_path}/cifar.h5:/train/images", "-o", str(last)],
        ["fit", f"{tmp_path}/cifar-nchw.npy", "--axis", "1", "-o", str(first)],
    ]
    for cmd in cmds:
        assert runner.invoke(main, cmd).exit_code == 0
    exports = [
        json.loads(runner.invoke(main, ["export", str(p), "--to", "torch"]).stdout)
        for p in (last, first)
    ]
    flat = nhwc.reshape(-1, 3).astype(np.float64)
    for got in exports:
        np.testing.assert_allclose(got["mean"], flat.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(got["std"], flat.std(axis=0), rtol=1e-12)


def test_lerobot_recipe_commands(tmp_path):
    """The LeRobot recipe's commands on a dataset directory of two files: the vector groups,
    exported for LeRobot and openpi, against numpy on the stacked vectors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    n = 4000
    state = (rng.standard_normal((n, 14)) * 0.01 + 1.5).astype(np.float32)
    action = (rng.standard_normal((n, 14)) * 0.5 + 500).astype(np.float32)
    table = pa.table(
        {
            "observation.state": pa.FixedSizeListArray.from_arrays(state.reshape(-1), 14),
            "action": pa.FixedSizeListArray.from_arrays(action.reshape(-1), 14),
            "timestamp": pa.array(np.arange(n) / 30, pa.float32()),
            "frame_index": np.arange(n) % 400,
            "episode_index": np.arange(n) // 400,
            "index": np.arange(n),
            "task_index": np.zeros(n, np.int64),
        }
    )
    data = tmp_path / "data" / "chunk-000"
    data.mkdir(parents=True)
    pq.write_table(table.slice(0, 2500), data / "file-000.parquet")
    pq.write_table(table.slice(2500), data / "file-001.parquet")
    runner = CliRunner()
    stats = tmp_path / "stats.json"
    levels = "0.01,0.1,0.5,0.9,0.99"
    fit = ["fit", str(tmp_path / "data"), "--quantiles", levels, "-o", str(stats)]
    result = runner.invoke(main, fit)
    assert result.exit_code == 0, result.output
    assert "feature groups: 2 (observation.state [14], action [14])" in result.stderr
    lerobot = json.loads(runner.invoke(main, ["export", str(stats), "--to", "lerobot"]).stdout)
    openpi = json.loads(runner.invoke(main, ["export", str(stats), "--to", "openpi"]).stdout)
    for name, x in (("observation.state", state), ("action", action)):
        x64 = x.astype(np.float64)
        np.testing.assert_allclose(lerobot[name]["mean"], x64.mean(0), rtol=1e-12)
        np.testing.assert_allclose(lerobot[name]["std"], x64.std(0), rtol=1e-12)
        np.testing.assert_allclose(openpi["norm_stats"][name]["std"], x64.std(0), rtol=1e-12)
        assert lerobot[name]["count"] == [n]
        # quantiles: within the summary's documented bound (1% of the value)
        np.testing.assert_allclose(lerobot[name]["q50"], np.quantile(x64, 0.5, 0), rtol=1e-2)
        assert set(openpi["norm_stats"][name]) == {"mean", "std", "q01", "q99"}
