"""plot: the right picture for the kind of features, holding the statistics' real values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main

pytest.importorskip("matplotlib")
from normstat.plot import plot  # noqa: E402

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits.h5"


def test_per_position_heatmaps_show_mean_and_std_images(digits):
    stats = normstat.fit(f"{DIGITS}:/images", axis=(1, 2))
    fig = plot(stats)
    heat = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in heat] == ["mean", "std"]
    x = digits.astype(np.float64)
    np.testing.assert_allclose(heat[0].images[0].get_array(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(heat[1].images[0].get_array(), x.std(axis=0), rtol=1e-12)
    assert heat[0].get_ylabel() == "row (axis 1)"
    assert heat[0].get_xlabel() == "column (axis 2)"
    assert fig.get_suptitle().startswith("digits.h5:/images: 1,797 samples of 8x8 uint8")


def test_channels_last_images_get_one_heatmap_row_per_channel():
    x = np.random.default_rng(5).integers(0, 255, size=(20, 6, 5, 3), dtype=np.uint8)
    fig = plot(normstat.fit_arrays(x, axis=(1, 2, 3)))
    heat = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in heat][:2] == ["mean (channel 0)", "std (channel 0)"]
    assert len(heat) == 6
    np.testing.assert_allclose(
        heat[4].images[0].get_array(), x[..., 2].astype(np.float64).mean(axis=0), rtol=1e-12
    )


def test_channel_bars_have_heights_of_the_means():
    x = np.random.default_rng(6).normal([10.0, 20.0, 30.0], 2.0, size=(50, 4, 4, 3))
    fig = plot(normstat.fit_arrays(x))
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, x.reshape(-1, 3).mean(axis=0), rtol=1e-12)
    assert ax.get_xlabel() == "channel (axis -1)"
    assert "statistics per channel" in fig.get_suptitle()


def test_table_features_are_labelled_by_name():
    x = np.column_stack([np.arange(10.0), np.arange(10.0) * 1000])
    stats = normstat.fit_arrays(x)
    stats.features = ["age", "income"]
    fig = plot(stats)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["age", "income"]
    assert ax.get_yscale() == "symlog"  # scales differ 1000x
    assert "statistics per column" in fig.get_suptitle()


def test_cli_writes_a_png_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "stats.png"
    stats = tmp_path / "s.json"
    normstat.save(normstat.fit(f"{DIGITS}:/images", axis=(1, 2)), str(stats))
    runner = CliRunner()
    res = runner.invoke(main, ["plot", str(stats), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(main, ["plot", str(stats), "-o", str(out)])
    assert again.exit_code == 2
    assert "output exists" in again.stderr
    bad = runner.invoke(main, ["plot", str(stats), "-o", str(tmp_path / "x.docx")])
    assert bad.exit_code == 2
    assert "cannot write .docx images" in bad.stderr


def test_many_features_are_drawn_as_bands_and_scalars_say_so():
    x = np.random.default_rng(8).normal(size=(30, 200))
    fig = plot(normstat.fit_arrays(x))
    (ax,) = fig.axes
    (line,) = ax.get_lines()  # the mean, as one step curve over the feature index
    np.testing.assert_allclose(line.get_ydata(), x.mean(axis=0), rtol=1e-12)
    scalar = plot(normstat.fit_arrays(x, axis=None))
    assert "statistics over all values (axis none)" in scalar.get_suptitle()
