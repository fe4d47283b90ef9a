"""Statistics too large for an HDF5 attribute (the object header holds 64 KiB) are recorded as
datasets beside the output, so per-position statistics of ImageNet-sized images apply."""

from __future__ import annotations

import json

import h5py
import numpy as np
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.sinks.hdf5 import ATTR_BYTES, read_record


def test_per_pixel_statistics_of_224x224x3_images_apply_to_hdf5(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(4, 224, 224, 3), dtype=np.uint8)
    src = tmp_path / "w.h5"
    with h5py.File(src, "w") as f:
        f["images"] = x
    stats = tmp_path / "s.json"
    runner = CliRunner()
    args = ["fit", f"{src}:/images", "--axis", "1", "--axis", "2", "--axis", "3", "-o", stats]
    assert runner.invoke(main, [str(a) for a in args]).exit_code == 0
    out = tmp_path / "out.h5"
    result = runner.invoke(main, ["apply", str(stats), f"{src}:/images", "-o", str(out)])
    assert result.exit_code == 0, result.output
    mean = x.astype(np.float64).mean(axis=0)
    std = x.astype(np.float64).std(axis=0)
    with h5py.File(out, "r") as f:
        ds = f["images"]
        assert mean.nbytes > ATTR_BYTES and "normstat_shift" not in ds.attrs
        np.testing.assert_allclose(read_record(ds, "normstat_shift"), mean, rtol=1e-12)
        assert read_record(ds, "normstat_method") == "zscore"
        recorded = json.loads(read_record(ds, "normstat_stats"))
        assert recorded["feature_shape"] == [224, 224, 3]
        expected = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1), x - mean)
        np.testing.assert_allclose(ds[:], expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    back = tmp_path / "back.h5"
    result = runner.invoke(
        main, ["apply", str(stats), f"{out}:/images", "--inverse", "-o", str(back)]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(back, "r") as f:
        np.testing.assert_allclose(f["images"][:], x, atol=1e-3)
    assert normstat.load(str(stats)).feature_shape == (224, 224, 3)


def test_an_output_through_a_missing_directory_is_refused_before_the_pass(tmp_path):
    np.save(tmp_path / "f.npy", np.ones((4, 2)))
    result = CliRunner().invoke(
        main, ["fit", str(tmp_path / "f.npy"), "-o", str(tmp_path / "nodir" / ".." / "s.json")]
    )
    assert result.exit_code == 2
    assert "the output's directory does not exist" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy"]
