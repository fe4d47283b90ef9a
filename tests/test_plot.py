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


def test_many_features_go_down_the_page_each_named_never_joined():
    x = np.random.default_rng(8).normal(size=(30, 303))
    fig = plot(normstat.fit_arrays(x))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 7  # 50 features per panel
    labels = [t.get_text() for ax in panels for t in ax.get_yticklabels()]
    assert labels == [f"[{i}]" for i in range(303)]  # every name, none skipped
    assert all(not ax.get_lines() for ax in panels)  # no line joins the means
    means = np.concatenate([ax.collections[-1].get_offsets()[:, 0] for ax in panels])
    np.testing.assert_allclose(means, x.mean(axis=0), rtol=1e-12)
    scalar = plot(normstat.fit_arrays(x, axis=None))
    assert "statistics over all values (axis none)" in scalar.get_suptitle()


def test_no_mark_is_clipped_and_the_legend_stays_clear_of_the_title():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rng = np.random.default_rng(9)
    x = np.column_stack([rng.normal(0, 1, 100), rng.normal(1e4, 10, 100)])
    fig = plot(normstat.fit_arrays(x))
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    lo, hi = ax.get_ylim()
    for c in ax.collections:
        for _, y in c.get_offsets():
            assert lo < y < hi  # strictly inside: nothing drawn on or beyond the frame
    (legend,) = fig.legends
    title = fig._suptitle.get_window_extent(renderer)
    assert not legend.get_window_extent(renderer).overlaps(title)
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_channel_heatmaps_share_one_colour_scale_or_say_they_do_not():
    rng = np.random.default_rng(10)
    similar = rng.random((40, 6, 6, 3)) * [100, 110, 120]
    fig = plot(normstat.fit_arrays(similar, axis=(1, 2, 3)))
    means = [ax.images[0] for ax in fig.axes if ax.images and ax.get_title().startswith("mean")]
    assert len({im.get_clim() for im in means}) == 1
    bars = [ax.get_ylabel() for ax in fig.axes if not ax.images]
    assert "one scale for all channels" in bars
    apart = rng.random((40, 6, 6, 3)) * [1, 10, 100]
    fig = plot(normstat.fit_arrays(apart, axis=(1, 2, 3)))
    means = [ax.images[0] for ax in fig.axes if ax.images and ax.get_title().startswith("mean")]
    assert len({im.get_clim() for im in means}) == 3
    assert "channel 2's own scale" in [ax.get_ylabel() for ax in fig.axes if not ax.images]


def test_an_artifact_without_rows_says_so():
    fig = plot(normstat.fit_arrays(np.zeros((0, 4))))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["nothing to draw: 0 rows (count 0)"]
    part = plot(normstat.fit_arrays(np.column_stack([np.arange(3.0), np.full(3, np.nan)])))
    assert [t.get_text() for t in part.axes[0].texts] == ["empty"]


def _collection(ax, label):
    found = [c for c in ax.collections if c.get_label() == label]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return found[0]


@pytest.mark.parametrize("n_features", [3, 5, 70])
def test_quantile_band_is_drawn_at_the_fitted_quantiles(n_features):
    """With quantiles, each feature's band spans the lowest to the highest fitted level, and
    the median is marked: the values numpy gives (uint8: exact)."""
    rng = np.random.default_rng(8)
    if n_features == 3:  # channels of images: bars
        x = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
        cols = x.reshape(-1, 3).astype(np.float64)
    else:
        x = rng.integers(0, 1000, (500, n_features)).astype(np.int16)
        cols = x.astype(np.float64)
    fig = plot(normstat.fit_arrays(x, quantiles=[0.05, 0.5, 0.95]))
    lo, med, hi = np.quantile(cols, [0.05, 0.5, 0.95], axis=0)
    segments, medians = [], []
    for ax in fig.axes:
        if not any(c.get_label() == "q0.05 - q0.95" for c in ax.collections):
            continue
        vertical = n_features <= 40
        for seg in _collection(ax, "q0.05 - q0.95").get_segments():
            v = seg[:, 1] if vertical else seg[:, 0]
            segments.append(sorted(v))
        offsets = _collection(ax, "median").get_offsets()
        medians.extend(offsets[:, 1] if vertical else offsets[:, 0])
    np.testing.assert_array_equal(np.array(segments), np.stack([lo, hi], axis=1))
    np.testing.assert_array_equal(np.array(medians), med)


def test_no_band_without_quantiles():
    fig = plot(normstat.fit_arrays(np.random.default_rng(9).normal(size=(50, 4))))
    labels = {c.get_label() for ax in fig.axes for c in ax.collections}
    assert not any(label.startswith("q") for label in labels) and "median" not in labels
