"""Human-readable text for statistics: an aligned per-feature table (no printing here)."""

from __future__ import annotations

import numpy as np

from normstat.core.stats import Stats

COLUMNS = ("feature", "count", "nan_count", "mean", "std", "min", "max")


def feature_names(stats: Stats) -> list[str]:
    if stats.features is not None:
        return list(stats.features)
    if not stats.feature_shape:
        return ["(all)"]
    return ["[" + ", ".join(map(str, i)) + "]" for i in np.ndindex(*stats.feature_shape)]


def _num(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.6g}"


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
    rows = [
        [name, str(int(cols[0][i])), str(int(cols[1][i]))] + [_num(c[i]) for c in cols[2:]]
        for i, name in enumerate(names)
    ]
    hidden = 0
    if limit is not None and len(rows) > limit:
        head, tail = limit - limit // 4, limit // 4
        hidden = len(rows) - head - tail
        rows = rows[:head] + [["...", "", "", "", "", "", ""]] + rows[len(rows) - tail :]
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    lines = [_line(COLUMNS, widths)] + [_line(r, widths) for r in rows]
    lines.append(_summary(stats, len(names)))
    if hidden:
        lines.append(f"{hidden} features not shown (use --all to list every one)")
    return "\n".join(lines)


def _line(cells: object, widths: list[int]) -> str:
    cells = list(cells)  # type: ignore[call-overload]
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
