"""Pictures of statistics, chosen by what the features are (needs the ``plot`` extra).

- per-position statistics (a 2-D or 3-D feature shape, e.g. ``--axis 1 --axis 2``): the mean image
  and the std image as heatmaps, one row per channel;
- a few channels of images (a 1-D feature shape of at most 16, from data with more than 2 axes):
  one bar per channel, mean with a ±std error bar, min and max marked;
- anything else (table columns, 1-D features, a scalar): per feature a min-max line, a mean ± std
  bar and the mean (as bands over the feature index past 60 features); a symmetric log axis when
  the features' scales differ by more than 100x.

With quantiles (``fit --quantiles``), the bars and lines also draw the quantile band: from the
lowest to the highest fitted level (q0.01 - q0.99, say), and the median when it was fitted.

matplotlib is imported here only, and only through its object API (``Figure``), so plotting never
changes pyplot's global state or backend in the caller's notebook.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from normstat.core.stats import Stats
from normstat.errors import UsageError
from normstat.report import feature_names
from normstat.sinks.atomic import atomic_output

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_CHANNEL_BARS = 16
MAX_TICK_LABELS = 40
MAX_RANGE_BARS = 40


def plot(stats: Stats | str, out: str | None = None, *, title: str | None = None) -> Figure:
    """Draw the statistics (see the module docstring for which picture); write ``out`` if
    given (format from its suffix: .png, .svg, .pdf), atomically. Returns the figure."""
    from normstat.api.inputs import as_path, as_stats

    stats = as_stats(stats)
    out = None if out is None else as_path(out, "out")
    fig = _new_figure()
    shape = tuple(stats.feature_shape)
    if len(shape) in (2, 3):
        _heatmaps(fig, stats)
    elif _is_channels(stats):
        _channel_bars(fig, stats)
    else:
        _per_feature(fig, stats)
    fig.suptitle(title or describe(stats), fontsize=11)
    if out is not None:
        _save(fig, out)
    return fig


def _new_figure() -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "plotting needs matplotlib: pip install 'normstat[plot]' (or pip install matplotlib)"
        ) from None
    return Figure(layout="constrained")


def _save(fig: Figure, out: str) -> None:
    suffix = os.path.splitext(out)[1].lstrip(".").lower() or "png"
    if suffix not in fig.canvas.get_supported_filetypes():
        raise UsageError(f"cannot write .{suffix} images; use .png, .svg or .pdf", path=out)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format=suffix, dpi=110)


def describe(stats: Stats) -> str:
    """The title: which data, how many samples of what shape, and what the features are."""
    src = stats.source or {}
    paths = ["stdin" if p == "-" else os.path.basename(p) for p in src.get("paths") or []]
    where = ", ".join(paths[:2]) + (f" (+{len(paths) - 2})" if len(paths) > 2 else "")
    if src.get("dataset"):
        where += f":{src['dataset']}"
    shape = src.get("shape") or []
    if stats.features is not None or src.get("kind") == "table":
        what = f"{shape[0]:,} rows" if shape else "rows"
        what += f", {len(stats.features or [])} numeric columns"
    else:
        what = f"{shape[0]:,} samples" if shape else "samples"
        if len(shape) > 1:
            what += f" of {'x'.join(map(str, shape[1:]))}"
        if src.get("dtype"):
            what += f" {src['dtype']}"
    axis = "none" if stats.axis is None else ", ".join(map(str, stats.axis))
    per = f"per {_per(stats)}" if stats.feature_shape else "over all values"
    return f"{where or 'in-memory data'}: {what}\nstatistics {per} (axis {axis})"


def _per(stats: Stats) -> str:
    if stats.features is not None:
        return "column"
    if len(stats.feature_shape) >= 2:
        return "position"
    if _is_channels(stats):
        return "channel"
    return "feature"


def _is_channels(stats: Stats) -> bool:
    shape = (stats.source or {}).get("shape") or []
    return (
        stats.features is None
        and len(stats.feature_shape) == 1
        and stats.feature_shape[0] <= MAX_CHANNEL_BARS
        and len(shape) > 2
    )


# ---------------------------------------------------------------------------------------------
# per-position heatmaps


def _channel_axis(shape: tuple[int, ...]) -> int | None:
    """Which axis of a 3-D feature shape holds channels: a small last (HWC) or first (CHW)."""
    if len(shape) == 2:
        return None
    if shape[-1] <= 4:
        return 2
    return 0 if shape[0] <= 4 else 2


def _heatmaps(fig: Figure, stats: Stats) -> None:
    shape = tuple(stats.feature_shape)
    cax = _channel_axis(shape)
    mean, std = stats.mean, stats.std
    if cax is None:
        planes = [("", mean, std)]
        kept = list(stats.axis or ())
    else:
        n = min(shape[cax], 4)
        planes = [
            (f" (channel {c})", np.take(mean, c, axis=cax), np.take(std, c, axis=cax))
            for c in range(n)
        ]
        kept = [a for i, a in enumerate(stats.axis or ()) if i != cax]
    fig.set_size_inches(8.0, 3.4 * len(planes) + 0.9)
    axes = fig.subplots(len(planes), 2, squeeze=False)
    scales = [_colour_scale([p[1] for p in planes]), _colour_scale([p[2] for p in planes])]
    for row, (label, m, s) in enumerate(planes):
        for col, (values, name, cmap) in enumerate(((m, "mean", "viridis"), (s, "std", "magma"))):
            limits = scales[col]
            own = cax is not None and limits is None
            note = (
                f"channel {row}'s own scale"
                if own
                else ("one scale for all channels" if cax is not None else "")
            )
            _heatmap(fig, axes[row][col], values, f"{name}{label}", cmap, kept, limits, note)


def _colour_scale(planes: list[np.ndarray]) -> tuple[float, float] | None:
    """One (vmin, vmax) shared by the channels' heatmaps of a statistic, so equal colours mean
    equal values; None when the channels' ranges differ too much for one scale to show them
    (a channel spanning under a tenth of the common range), each then with its own scale,
    which the colour bar says."""
    spans = []
    for p in planes:
        f = p[np.isfinite(p)]
        if f.size:
            spans.append((float(f.min()), float(f.max())))
    if not spans:
        return None
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if len(planes) > 1 and hi > lo and any((b - a) < 0.1 * (hi - lo) for a, b in spans):
        return None
    return lo, hi


def _heatmap(
    fig: Figure,
    ax: Any,
    values: np.ndarray,
    name: str,
    cmap: str,
    kept: list,
    limits: tuple[float, float] | None = None,
    note: str = "",
) -> None:
    vmin, vmax = limits if limits is not None else (None, None)
    img = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax
    )
    bar = fig.colorbar(img, ax=ax, shrink=0.85)
    if note:
        bar.set_label(note, fontsize=8)
    ax.set_title(name, fontsize=10)
    rows_axis, cols_axis = (kept + [None, None])[:2]
    ax.set_ylabel(f"row (axis {rows_axis})" if rows_axis is not None else "row")
    ax.set_xlabel(f"column (axis {cols_axis})" if cols_axis is not None else "column")
    if not np.isfinite(values).any():
        ax.text(0.5, 0.5, "no values (count 0)", transform=ax.transAxes, ha="center",
                va="center", color="0.3")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# per-channel bars


def _channel_bars(fig: Figure, stats: Stats) -> None:
    n = stats.feature_shape[0]
    names = _channel_names(n)
    x = np.arange(n)
    fig.set_size_inches(max(4.5, 1.1 * n + 2.5), 4.2)
    ax = fig.subplots()
    ax.bar(x, stats.mean, yerr=stats.std, capsize=6, color=_channel_colours(n), alpha=0.8,
           label="mean ± std")  # fmt: skip
    ax.scatter(x, stats.min, marker="v", color="0.3", zorder=3, label="min", clip_on=False)
    ax.scatter(x, stats.max, marker="^", color="0.3", zorder=3, label="max", clip_on=False)
    band = _quantile_band(stats)
    if band is not None:
        label, lo, hi, median = band
        ax.vlines(x + 0.3, lo, hi, color="tab:orange", linewidth=5, label=label, zorder=3)
        if median is not None:
            ax.scatter(x + 0.3, median, color="tab:orange", edgecolor="0.2", zorder=4, s=24,
                       label="median")  # fmt: skip
    labels = [
        f"{name}\nmean {m:.4g}\nstd {s:.3g}"
        for name, m, s in zip(names, stats.mean, stats.std, strict=True)
    ]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel(f"channel (axis {stats.axis[0] if stats.axis else '-'})")
    ax.set_ylabel("value (units of the data)")
    top = np.nanmax(np.concatenate([stats.max, stats.mean + stats.std]))
    if np.isfinite(top) and top > 0:
        ax.set_ylim(top=top * 1.2)  # room for the legend above the max markers
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _channel_names(n: int) -> list[str]:
    if n == 3:
        return ["0 (R)", "1 (G)", "2 (B)"]
    return [str(i) for i in range(n)]


def _channel_colours(n: int) -> list[str]:
    return ["tab:red", "tab:green", "tab:blue"] if n == 3 else ["tab:blue"] * n


# ---------------------------------------------------------------------------------------------
# per-feature band


def _per_feature(fig: Figure, stats: Stats) -> None:
    """One mark per feature: a thin min-max line, a thick mean ± std bar, a dot at the mean.
    Never a connected line: features are separate quantities, not a series. Up to
    :data:`MAX_RANGE_BARS` features side by side; more go down the page (features on the y
    axis, one per row, in panels of :data:`PANEL_ROWS`), so every name stays readable."""
    names = feature_names(stats)
    values = {
        "mean": stats.mean.ravel(),
        "std": stats.std.ravel(),
        "lo": stats.min.ravel(),
        "hi": stats.max.ravel(),
    }
    band = _quantile_band(stats)
    if band is not None:
        values["band"] = np.stack(band[1:3])  # (2, features)
        if band[3] is not None:
            values["median"] = band[3]
    finite = np.concatenate([values["lo"], values["hi"]])
    finite = finite[np.isfinite(finite)]
    what = "column" if stats.features is not None else "feature"
    if len(names) <= MAX_RANGE_BARS:
        fig.set_size_inches(min(14.0, max(6.0, 0.4 * len(names) + 3.0)), 4.8)
        ax = fig.subplots()
        _ranges(ax, np.arange(len(names)), values, vertical=True, band=band and band[0])
        _feature_ticks(ax, names)
        ax.set_xlabel(what)
        _value_axis(ax, finite, "y")
        panels = [ax]
    else:
        panels = _panels(fig, names, values, finite, what, band and band[0])
    for ax in panels:
        ax.grid(alpha=0.3)
    _note_empty(panels, names, stats, len(names) <= MAX_RANGE_BARS)
    if finite.size:
        fig.legend(
            *panels[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8
        )


PANEL_ROWS = 50


def _panels(
    fig: Figure,
    names: list[str],
    values: dict[str, np.ndarray],
    finite: np.ndarray,
    what: str,
    band: str | None = None,
) -> list[Any]:
    n_panels = int(np.ceil(len(names) / PANEL_ROWS))
    ncols = min(4, n_panels)
    nrows = int(np.ceil(n_panels / ncols))
    longest = max(len(n) for n in names)
    width = ncols * (2.6 + 0.055 * longest) + 0.5
    fig.set_size_inches(min(30.0, width), nrows * (0.15 * PANEL_ROWS + 1.2) + 1.2)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    panels = []
    for k, ax in enumerate(grid.ravel()):
        part = np.arange(k * PANEL_ROWS, min(len(names), (k + 1) * PANEL_ROWS))
        if part.size == 0:
            ax.set_visible(False)
            continue
        view = {key: v[..., part] for key, v in values.items()}
        _ranges(ax, part, view, vertical=False, band=band)
        ax.set_yticks(part, [names[i] for i in part], fontsize=7)
        ax.set_ylim(part[0] + PANEL_ROWS - 0.5, part[0] - 0.5)  # top to bottom, equal rows
        _value_axis(ax, finite, "x")
        ax.tick_params(axis="x", labelbottom=True, labelrotation=90, labelsize=8)
        panels.append(ax)
    fig.supylabel(f"{what} (in order, top to bottom)", fontsize=9)
    return panels


def _ranges(
    ax: Any, x: np.ndarray, v: dict[str, np.ndarray], vertical: bool, band: str | None = None
) -> None:
    """min - max, mean ± std, the mean; with ``band`` (its label), the quantile band of
    ``v["band"]`` and the median of ``v["median"]``."""
    lines = ax.vlines if vertical else ax.hlines
    lo, hi, mean, std = v["lo"], v["hi"], v["mean"], v["std"]

    def points(pos: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (pos, val) if vertical else (val, pos)

    cap = "_" if vertical else "|"
    lines(x, lo, hi, color="0.55", linewidth=1.2, label="min - max", clip_on=False)
    ax.scatter(*points(x, lo), marker=cap, color="0.4", s=60, clip_on=False)
    ax.scatter(*points(x, hi), marker=cap, color="0.4", s=60, clip_on=False)
    lines(x, mean - std, mean + std, color="tab:blue", linewidth=6 if vertical else 4,
          alpha=0.45, label="mean ± std", clip_on=False)  # fmt: skip
    ax.scatter(*points(x, mean), color="tab:blue", zorder=3, s=18, label="mean", clip_on=False)
    if "band" in v:
        lines(x, v["band"][0], v["band"][1], color="tab:orange", linewidth=2.5, zorder=2,
              label=band, clip_on=False)  # fmt: skip
    if "median" in v:
        ax.scatter(*points(x, v["median"]), color="tab:orange", marker="D", s=14, zorder=4,
                   label="median", clip_on=False)  # fmt: skip


def _quantile_band(
    stats: Stats,
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The quantile band: (label, lowest level's quantiles, highest level's, the median or
    None), flat over features; None without at least two fitted levels."""
    levels, q = stats.quantile_levels, stats.quantiles
    if levels is None or q is None or len(levels) < 2:
        return None
    q = q.reshape(len(levels), -1)
    median = q[levels.index(0.5)] if 0.5 in levels else None
    return f"q{levels[0]:g} - q{levels[-1]:g}", q[0], q[-1], median


def _value_axis(ax: Any, finite: np.ndarray, which: str) -> None:
    """The value axis: a symmetric log scale when the features' scales differ by more than
    100x, limits padded so no mark sits on the frame."""
    label = "value (units of each feature)"
    set_scale = ax.set_yscale if which == "y" else ax.set_xscale
    if _mixed_scales(finite):
        set_scale("symlog", linthresh=_linthresh(finite))
        label = "value (symmetric log scale)"
    (ax.set_ylabel if which == "y" else ax.set_xlabel)(label)
    if not finite.size:
        return
    axis = ax.yaxis if which == "y" else ax.xaxis
    t = axis.get_transform()
    lo, hi = t.transform(np.array([finite.min(), finite.max()]).reshape(-1, 1)).ravel()
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    lo_v, hi_v = t.inverted().transform(np.array([[lo - pad], [hi + pad]])).ravel()
    if finite.min() >= 0:
        lo_v = max(lo_v, 0.0)  # no negative values to show: the axis starts at 0 at most
    (ax.set_ylim if which == "y" else ax.set_xlim)(lo_v, hi_v)


def _note_empty(panels: list[Any], names: list[str], stats: Stats, vertical: bool) -> None:
    """Features without values have nothing to draw: say so where they would be."""
    empty = np.flatnonzero(stats.count.ravel() == 0)
    if empty.size == len(names):
        rows = ((stats.source or {}).get("shape") or [None])[0]
        why = "0 rows" if rows == 0 else "no finite value in any feature"
        panels[0].text(0.5, 0.5, f"nothing to draw: {why} (count 0)",
                       transform=panels[0].transAxes, ha="center", va="center",
                       color="0.3")  # fmt: skip
        panels[0].set_yticks([])
        return
    for i in empty.tolist():
        ax = panels[0] if vertical else panels[i // PANEL_ROWS]
        kw = {"rotation": 90} if vertical else {}
        trans = ax.get_xaxis_transform() if vertical else ax.get_yaxis_transform()
        pos = (i, 0.5) if vertical else (0.5, i)
        ax.text(*pos, "empty", transform=trans, ha="center", va="center", fontsize=7,
                color="0.4", style="italic", **kw)  # fmt: skip


def _feature_ticks(ax: Any, names: list[str]) -> None:
    step = max(1, int(np.ceil(len(names) / MAX_TICK_LABELS)))
    ticks = np.arange(0, len(names), step)
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=45 if len(names) > 6 else 0,
                  ha="right" if len(names) > 6 else "center")  # fmt: skip


def _mixed_scales(values: np.ndarray) -> bool:
    mags = np.abs(values[np.isfinite(values) & (values != 0)])
    return mags.size > 1 and mags.max() / mags.min() > 100 and mags.max() > 100


def _linthresh(values: np.ndarray) -> float:
    """Linear below the smallest non-zero magnitude, rounded down to a power of ten."""
    mags = np.abs(values[values != 0])
    return float(10 ** np.floor(np.log10(mags.min()))) if mags.size else 1.0
