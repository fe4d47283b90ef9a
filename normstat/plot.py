"""Pictures of statistics, chosen by what the features are (needs the ``plot`` extra).

- per-position statistics (a 2-D or 3-D feature shape, e.g. ``--axis 1 --axis 2``): the mean image
  and the std image as heatmaps, one row per channel;
- a few channels of images (a 1-D feature shape of at most 16, from data with more than 2 axes):
  one bar per channel, mean with a ±std error bar, min and max marked;
- anything else (table columns, 1-D features, a scalar): per feature a min-max line, a mean ± std
  bar and the mean (as bands over the feature index past 60 features); a symmetric log axis when
  the features' scales differ by more than 100x.

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
MAX_RANGE_BARS = 60


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
    fig.set_size_inches(8.0, 3.3 * len(planes) + 0.6)
    axes = fig.subplots(len(planes), 2, squeeze=False)
    for row, (label, m, s) in enumerate(planes):
        _heatmap(fig, axes[row][0], m, f"mean{label}", "viridis", kept)
        _heatmap(fig, axes[row][1], s, f"std{label}", "magma", kept)


def _heatmap(fig: Figure, ax: Any, values: np.ndarray, name: str, cmap: str, kept: list) -> None:
    img = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, interpolation="nearest")
    fig.colorbar(img, ax=ax, shrink=0.85)
    ax.set_title(name, fontsize=10)
    rows_axis, cols_axis = (kept + [None, None])[:2]
    ax.set_ylabel(f"row (axis {rows_axis})" if rows_axis is not None else "row")
    ax.set_xlabel(f"column (axis {cols_axis})" if cols_axis is not None else "column")


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
    ax.scatter(x, stats.min, marker="v", color="0.3", zorder=3, label="min")
    ax.scatter(x, stats.max, marker="^", color="0.3", zorder=3, label="max")
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
    """One column per feature: a thin min-max line, a thick mean ± std bar, a dot at the mean.
    Not a connected line: features are separate quantities, not a series."""
    names = feature_names(stats)
    mean, std = stats.mean.ravel(), stats.std.ravel()
    lo, hi = stats.min.ravel(), stats.max.ravel()
    x = np.arange(len(names))
    fig.set_size_inches(min(14.0, max(6.0, 0.4 * len(names) + 3.0)), 4.8)
    ax = fig.subplots()
    if len(names) > MAX_RANGE_BARS:
        _bands(ax, x, mean, std, lo, hi)
    else:
        _ranges(ax, x, mean, std, lo, hi)
    _feature_ticks(ax, names)
    ax.set_xlabel("column" if stats.features is not None else "feature")
    ax.set_ylabel("value (units of each feature)")
    finite = np.concatenate([lo, hi])
    finite = finite[np.isfinite(finite)]
    if _mixed_scales(finite):
        ax.set_yscale("symlog", linthresh=_linthresh(finite))
        ax.set_ylabel("value (symmetric log scale)")
    if finite.size and finite.min() >= 0:
        ax.set_ylim(bottom=0)
    fig.legend(loc="outside right upper", fontsize=8)
    ax.grid(alpha=0.3)


def _ranges(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, lo: np.ndarray,
            hi: np.ndarray) -> None:  # fmt: skip
    ax.vlines(x, lo, hi, color="0.55", linewidth=1.2, label="min - max")
    ax.scatter(x, lo, marker="_", color="0.4", s=80)
    ax.scatter(x, hi, marker="_", color="0.4", s=80)
    ax.vlines(x, mean - std, mean + std, color="tab:blue", linewidth=6, alpha=0.45,
              label="mean ± std")  # fmt: skip
    ax.scatter(x, mean, color="tab:blue", zorder=3, s=22, label="mean")


def _bands(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, lo: np.ndarray,
           hi: np.ndarray) -> None:  # fmt: skip
    """Too many features for one bar each: draw them as curves over the feature index."""
    ax.fill_between(x, lo, hi, color="0.85", step="mid", label="min - max")
    ax.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.35, step="mid",
                    label="mean ± std")  # fmt: skip
    ax.step(x, mean, where="mid", color="tab:blue", linewidth=1, label="mean")


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
