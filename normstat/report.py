"""Human-readable text: aligned per-feature tables of statistics and of drift (no printing)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from normstat.core.drift import Drift
from normstat.core.layout import feature_names as names_of
from normstat.core.stats import Stats

COLUMNS = ("feature", "count", "nan_count", "mean", "std", "min", "max")


def feature_names(stats: Stats) -> list[str]:
    return names_of(stats.features, stats.feature_shape)


def _num(v: float, digits: int = 5) -> str:
    """About ``digits`` significant digits, thousands separated, no exponent between 1e-4 and
    1e9, trailing zeros dropped (so integer data reads as integers); ``--json`` is exact."""
    if not np.isfinite(v):
        return "-" if np.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    mag = int(np.floor(np.log10(abs(v))))
    if mag >= 9 or mag < -4:
        return f"{v:.{digits - 1}e}"
    text = f"{v:,.{max(0, digits - 1 - mag)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def table(stats: Stats, limit: int | None = 20) -> str:
    """The table, showing the first and last rows with a hint when there are more than
    ``limit`` features (``None`` shows all)."""
    names = feature_names(stats)
    cols = [
        stats.count.ravel(),
        stats.nan_count.ravel(),
        stats.mean.ravel(),
        stats.std.ravel(),
        stats.min.ravel(),
        stats.max.ravel(),
    ]
    header = list(COLUMNS)
    if stats.quantiles is not None and stats.quantile_levels is not None:
        header += [_level_name(q) for q in stats.quantile_levels]
        cols += list(stats.quantiles.reshape(len(stats.quantile_levels), -1))
    rows = [
        [name, f"{int(cols[0][i]):,}", f"{int(cols[1][i]):,}"] + [_num(c[i]) for c in cols[2:]]
        for i, name in enumerate(names)
    ]
    hidden = 0
    if limit is not None and len(rows) > limit:
        head, tail = limit - limit // 4, limit // 4
        hidden = len(rows) - head - tail
        rows = rows[:head] + [["..."] + [""] * (len(header) - 1)] + rows[len(rows) - tail :]
    rows = _align_decimals(rows, range(3, len(header)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_line(header, widths)] + [_line(r, widths) for r in rows]
    lines.append(_summary(stats, len(names)))
    if hidden:
        lines.append(_overview(stats))
        lines.append(f"{hidden} features not shown (use --all to list every one)")
    return "\n".join(lines)


def _level_name(q: float) -> str:
    """0.5 -> q50, 0.01 -> q01, 0.999 -> q99.9, 0.001 -> q0.1 (LeRobot's q01 ... q99 names)."""
    pct = f"{q * 100:.6g}"
    return "q" + (pct.zfill(2) if pct.isdigit() else pct)


def _overview(stats: Stats) -> str:
    """One line over every feature, so a long table that is cut still says what it holds."""

    def span(a: np.ndarray) -> str:
        a = a[np.isfinite(a)]
        return "-" if a.size == 0 else f"{_num(float(a.min()))} .. {_num(float(a.max()))}"

    return (
        f"across all features: mean {span(stats.mean)}, std {span(stats.std)}, "
        f"min {span(stats.min)}, max {span(stats.max)}, "
        f"{int(stats.constant.sum())} constant, {int((stats.count == 0).sum())} empty"
    )


def _align_decimals(rows: list[list[str]], columns: range) -> list[list[str]]:
    """Pad numbers on the right so the decimal points of a column line up."""

    def frac(cell: str) -> int:
        return len(cell) - cell.index(".") if "." in cell else 0

    for c in columns:
        width = max(frac(r[c]) for r in rows)
        for r in rows:
            if r[c] and r[c][-1].isdigit():
                r[c] = r[c] + " " * (width - frac(r[c]))
    return rows


def _line(cells: Sequence[str], widths: list[int]) -> str:
    cells = list(cells)
    parts = [cells[0].ljust(widths[0])] + [
        c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)
    ]
    return "  ".join(parts).rstrip()


def _summary(stats: Stats, n: int) -> str:
    src = stats.source or {}
    paths = src.get("paths") or []
    where = ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
    if src.get("dataset"):
        where += f":{src['dataset']}"
    axis = "none" if stats.axis is None else list(stats.axis)
    return (
        f"{n} features, feature shape {list(stats.feature_shape)}, axis {axis}, "
        f"ddof {stats.ddof}; source {where or '?'} {src.get('shape', '')} "
        f"{src.get('dtype', '')}".rstrip()
    )


DRIFT_COLUMNS = ("feature", "mean_shift", "std_ratio", "min A -> B", "max A -> B")


def drift_table(drift: Drift, limit: int | None = 20, threshold: float | None = None) -> str:
    """Features worst first: standardized mean shift, std ratio, and how the range moved.

    With a ``threshold``, features whose ``|mean_shift|`` exceeds it are marked ``!``.
    """
    order = drift.order if limit is None else drift.order[:limit]
    flagged = set() if threshold is None else set(drift.exceeding(threshold).tolist())
    metric = [] if drift.distance is None else [drift.distance]
    rows = [
        [
            ("! " if i in flagged else "  ") + drift.names[i],
            *[_num(m[i], 4) for m in metric],
            _signed(drift.mean_shift[i]),
            _num(drift.std_ratio[i], 4),
            f"{_num(drift.min_a[i])} -> {_num(drift.min_b[i])}",
            f"{_num(drift.max_a[i])} -> {_num(drift.max_b[i])}",
        ]
        for i in order.tolist()
    ]
    rows = _align_decimals(rows, range(1, 3 + len(metric)))
    named = [str(drift.metric)] if metric else []
    header = ["  " + DRIFT_COLUMNS[0], *named, *DRIFT_COLUMNS[1:]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_line(header, widths)] + [_line(r, widths) for r in rows]
    lines.append(_drift_summary(drift, threshold))
    if len(order) < len(drift.order):
        lines.append(f"{len(drift.order) - len(order)} features not shown (use --all)")
    return "\n".join(lines)


def _signed(v: float) -> str:
    text = _num(v, 4)
    return "+" + text if np.isfinite(v) and v > 0 else text


def _drift_summary(drift: Drift, threshold: float | None) -> str:
    n = len(drift.order)
    worst = int(drift.order[0]) if n else None
    text = f"{n} features compared"
    if worst is not None and np.isfinite(drift.mean_shift[worst]):
        largest = _num(abs(drift.mean_shift[worst]), 4)
        text += f"; largest |mean_shift| {largest} at {drift.names[worst]}"
    if threshold is not None:
        k = len(drift.exceeding(threshold))
        tested = "|mean_shift|" if drift.metric is None else str(drift.metric)
        text += f"; {k} with {tested} > {_num(threshold)}"
    return text
