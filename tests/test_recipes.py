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
