"""Human-readable text: aligned per-feature tables of statistics and of drift (no printing)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from normstat import artifact
from normstat.core.groups import std_change
from normstat.core.layout import feature_names as names_of
from normstat.core.layout import feature_names_at
from normstat.core.stats import Stats

if TYPE_CHECKING:
    from normstat.core.drift import Drift

COLUMNS = ("feature", "count", "nan_count", "mean", "std", "min", "max", "note")


def feature_names(stats: Stats) -> list[str]:
    return names_of(stats.features, stats.feature_shape)


def _num(v: float, digits: int = 5) -> str:
    """One number alone (summaries): about ``digits`` significant digits, thousands separated,
    no exponent between 1e-4 and 1e9, trailing zeros dropped; ``--json`` is exact."""
    if not np.isfinite(v):
        return "-" if np.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    mag = int(np.floor(np.log10(abs(v))))
    if mag >= 9 or mag < -4:
        return f"{v:.{digits - 1}e}"
    text = f"{v:,.{max(0, digits - 1 - mag)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_columns(cols: Sequence[np.ndarray], digits: int = 5) -> list[list[str]]:
    """Numbers of columns that share units (mean, min, max) in ONE notation, with one number of
    decimals (so decimal points align), and enough digits that values of a row that differ
    print differently (so ``max > mean`` is visible even at 1e9 +- 0.3), as pandas' float
    formatting chooses one format per column. Returns the strings per column."""
    arrays = [np.asarray(c, np.float64) for c in cols]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.empty(0)
    mags = np.abs(finite[finite != 0])
    if mags.size == 0:
        return [[_special(v) if not np.isfinite(v) else "0" for v in a] for a in arrays]
    hi, lo = float(mags.max()), float(mags.min())
    sci = hi >= 1e12 or lo < 1e-4 or hi / lo >= 1e8
    if sci:
        places = digits - 1
        fmt = "{:.%de}"
    else:
        typical = float(np.median(mags))
        places = max(0, digits - 1 - int(np.floor(np.log10(typical))))
        if np.all(finite == np.round(finite)):
            places = 0
        fmt = "{:,.%df}"
    while places < 17 and not _rows_distinct(arrays, fmt % places):
        places += 1
    out = [
        [_special(v) if not np.isfinite(v) else (fmt % places).format(v) for v in a] for a in arrays
    ]
    return [_strip_common_zeros(c) for c in out]


def _special(v: float) -> str:
    return "-" if np.isnan(v) else ("inf" if v > 0 else "-inf")


def _rows_distinct(arrays: list[np.ndarray], fmt: str) -> bool:
    if len(arrays) < 2:
        return True
    for row in zip(*arrays, strict=True):
        vals = {float(v) for v in row if np.isfinite(v)}
        if len({fmt.format(v) for v in vals}) < len(vals):
            return False
    return True


def _strip_common_zeros(cells: list[str]) -> list[str]:
    """Drop trailing zeros that every number of the column has (and a bare decimal point)."""

    def is_num(c: str) -> bool:
        return c not in ("", "-", "inf", "-inf")

    def mantissa(c: str) -> str:
        return c.split("e")[0]

    nums = [c for c in cells if is_num(c)]
    if not nums or not all("." in mantissa(c) for c in nums):
        return cells
    while all(mantissa(c).endswith("0") for c in nums) or all(
        mantissa(c).endswith(".") for c in nums
    ):
        done = all(mantissa(c).endswith(".") for c in nums)
        nums = [_drop_last_digit(c) for c in nums]
        cells = [_drop_last_digit(c) if is_num(c) else c for c in cells]
        if done:
            break
    return cells


def _drop_last_digit(c: str) -> str:
    m, _, e = c.partition("e")
    return m[:-1] + (f"e{e}" if e else "")


def notes(stats: Stats) -> list[str]:
    """Per feature: ``empty`` (no value: null statistics), ``constant`` (every value equal) or
    ``near-constant`` (values differ, but z-scoring only centres it: docs/numerics.md)."""
    empty = (stats.count == 0).reshape(-1)
    near = stats.near_constant().reshape(-1)
    const = stats.constant.reshape(-1) & ~near
    return [
        "empty" if e else "near-constant" if n else "constant" if c else ""
        for e, n, c in zip(empty.tolist(), near.tolist(), const.tolist(), strict=True)
    ]


def table(stats: Stats, limit: int | None = 20) -> str:
    """The table, showing the first and last rows with a hint when there are more than
    ``limit`` features (``None`` shows all). Numbers are formatted over the rows shown."""
    n = int(stats.moments.count.size)
    idx = _shown(n, limit)
    overview = _Overview()
    if idx.size < n:
        overview.add(stats)
    rows = _rows(stats, idx, 0, stats.feature_shape)
    return _render(rows, idx, stats, stats.feature_shape, overview, limit)


def show_file(path: str, limit: int | None = 20) -> str:
    """:func:`table` of the artifact at ``path``, read a block of features at a time
    (``artifact.stream``): only the rows shown and the one-line overview are kept, so memory
    does not grow with the features of a wide artifact (3M features). An artifact with a
    distribution summary, and ``limit=None`` (every row is shown), are loaded whole."""
    big = os.path.isfile(path) and os.path.getsize(path) > artifact.STREAM_BYTES
    streamed = artifact.stream(path) if limit is not None and big else None
    if streamed is None:
        return table(artifact.load(path), limit)
    header, shape, blocks = streamed
    n = math.prod(shape)
    idx = _shown(n, limit)
    parts, overview = [], _Overview()
    for start, part in blocks:
        local = idx[(idx >= start) & (idx < start + part.moments.count.size)] - start
        if local.size:
            parts.append(_rows(part, local, start, shape))
        if idx.size < n:
            overview.add(part)
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    return _render(rows, idx, header, shape, overview, limit)


def _shown(n: int, limit: int | None) -> np.ndarray:
    """The indices of the rows shown: all, or the first and last when more than ``limit``."""
    idx = np.arange(n)
    if limit is not None and n > limit:
        head, tail = limit - limit // 4, limit // 4
        idx = np.concatenate([idx[:head], idx[n - tail :]])
    return idx


_ROW_KEYS = ("count", "nan_count", "mean", "std", "min", "max")


def _rows(stats: Stats, idx: np.ndarray, start: int, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """The values of the rows ``idx`` (flat feature indices) of ``stats``, a block of the
    features of ``shape`` from ``start`` on: its columns, notes and names, and quantiles when
    it has them (``q0``, ``q1``, ...)."""
    out = {k: getattr(stats, k).ravel()[idx] for k in _ROW_KEYS}
    out["note"] = np.array(notes(stats), dtype=object)[idx]
    names = feature_names_at(stats.features, shape, idx + start, start)
    out["name"] = np.array(names, dtype=object)
    if stats.quantile_levels is not None and stats.quantiles is not None:
        qs = stats.quantiles.reshape(len(stats.quantile_levels), -1)
        out.update({f"q{j}": q[idx] for j, q in enumerate(qs)})
    return out


def _render(
    rows: dict[str, np.ndarray],
    idx: np.ndarray,
    header_stats: Stats,
    shape: Sequence[int],
    overview: _Overview,
    limit: int | None,
) -> str:
    n = math.prod(shape)
    hidden = n - idx.size
    empty = np.empty(0)
    col = {k: rows.get(k, empty) for k in (*_ROW_KEYS, "note", "name")}
    (std,) = format_columns([col["std"]])
    mean_s, min_s, max_s = format_columns([col["mean"], col["min"], col["max"]])
    levels = header_stats.quantile_levels if "q0" in rows else None
    qcols = format_columns([rows[f"q{j}"] for j in range(len(levels))]) if levels else []
    header = [*COLUMNS[:-1], *(_level_name(q) for q in levels or ()), COLUMNS[-1]]
    table_rows = [
        [
            col["name"][k],
            f"{int(col['count'][k]):,}",
            f"{int(col['nan_count'][k]):,}",
            mean_s[k],
            std[k],
            min_s[k],
            max_s[k],
            *(q[k] for q in qcols),
            col["note"][k],
        ]
        for k in range(idx.size)
    ]
    if hidden:
        head = limit - limit // 4  # type: ignore[operator]
        table_rows = table_rows[:head] + [["..."] + [""] * (len(header) - 1)] + table_rows[head:]
    widths = [max(len(r[i]) for r in [header, *table_rows]) for i in range(len(header))]
    if not any(r[-1] for r in table_rows):
        widths[-1] = 0
    lines = [_line(header if widths[-1] else header[:-1], widths)]
    lines += [_line(r, widths) for r in table_rows]
    lines.append(_summary(header_stats, shape, n))
    if header_stats.feature_groups is not None:
        lines.append(feature_groups_line(header_stats))
    if hidden:
        lines.append(overview.text())
        lines.append(f"{hidden} features not shown (use --all to list every one)")
    lines += keyed_lines(header_stats)
    return "\n".join(lines)


def keyed_lines(stats: Stats) -> list[str]:
    """What a fit by group or weighted holds, in a line each (fit's stderr, show)."""
    lines = []
    if stats.weights is not None:
        m = stats.moments
        zero = int(((m.count == 0) & (m.total_weight == 0)).sum())
        total = float(m.total_weight.max()) if m.n_features else 0.0
        line = f"weighted by column {stats.weights!r}: total weight {_num(total)}"
        if zero:
            line += (
                f"; {zero} feature(s) have no value of positive weight: their statistics are null"
            )
        lines.append(line)
    if stats.groups is not None:
        lines.append(
            f"by column {stats.by!r}: {stats.groups.n_groups:,} groups, each with its own "
            "statistics (show --by: the groups that move the pooled std most)"
        )
    return lines


GROUP_COLUMNS = ("group", "rows", "feature", "std change", "group mean", "group std", "pooled mean")


def groups_table(stats: Stats, limit: int | None = 20) -> str:
    """The groups ranked by how much they move the pooled std (the largest change over the
    features, :func:`~normstat.core.groups.std_change`): for each, the feature it moves most."""
    groups = stats.groups
    if groups is None:
        return "these statistics were not fitted by group (fit --by COL)"
    if groups.n_groups == 0:
        return f"by column {stats.by!r}: no group (no rows)"
    change = std_change(stats.moments, groups, stats.ddof)
    size = np.nan_to_num(np.abs(change), nan=-1.0)
    worst = np.argmax(size, axis=1)
    score = size[np.arange(len(worst)), worst]
    order = np.argsort(-score, kind="stable")
    shown = order if limit is None else order[:limit]
    per = stats.by_group()
    n = stats.moments.n_features
    mean, std = per.mean.reshape(-1, n), per.std.reshape(-1, n)
    names = feature_names(stats)
    j = worst[shown]
    (mean_s, pooled_s) = format_columns([mean[shown, j], stats.mean.reshape(-1)[j]])
    (std_s,) = format_columns([std[shown, j]])
    rows = [
        [
            str(groups.keys[i]),
            f"{int(groups.moments.count[i].max()):,}",
            names[j[k]],
            "-" if score[i] < 0 else f"{change[i, j[k]] * 100:+.3g}%",
            mean_s[k],
            std_s[k],
            pooled_s[k],
        ]
        for k, i in enumerate(shown.tolist())
    ]
    header = list(GROUP_COLUMNS)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"by column {stats.by!r}: {groups.n_groups:,} groups; std change: the pooled std with "
        "the group against without it",
        _line(header, widths),
        *(_line(r, widths) for r in rows),
    ]
    if len(shown) < groups.n_groups:
        lines.append(
            f"{groups.n_groups - len(shown)} groups not shown (use --all to list every one)"
        )
    return "\n".join(lines)


def feature_groups_line(stats: Stats) -> str:
    """``feature groups: observation.state [14], action [14]`` (the feature groups, in order)."""
    parts = [f"{name} {list(shape)}" for name, shape, _ in stats.feature_group_slices()]
    return f"feature groups: {len(parts)} ({', '.join(parts)})"


def _level_name(q: float) -> str:
    """0.5 -> q50, 0.01 -> q01, 0.999 -> q99.9, 0.001 -> q0.1 (LeRobot's q01 ... q99 names)."""
    pct = f"{q * 100:.6g}"
    return "q" + (pct.zfill(2) if pct.isdigit() else pct)


def _overview(stats: Stats) -> str:
    """The overview line of all of ``stats`` at once."""
    overview = _Overview()
    overview.add(stats)
    return overview.text()


class _Overview:
    """One line over every feature, so a long table that is cut still says what it holds;
    added to a block of features at a time."""

    def __init__(self) -> None:
        self.span = {k: (np.inf, -np.inf) for k in ("mean", "std", "min", "max")}
        self.kinds = {"constant": 0, "near-constant": 0, "empty": 0}

    def add(self, stats: Stats) -> None:
        for k, (lo, hi) in self.span.items():
            a = getattr(stats, k)
            a = a[np.isfinite(a)]
            if a.size:
                self.span[k] = (min(lo, float(a.min())), max(hi, float(a.max())))
        kinds = notes(stats)
        for kind in self.kinds:
            self.kinds[kind] += kinds.count(kind)

    def text(self) -> str:
        def span(k: str) -> str:
            lo, hi = self.span[k]
            return "-" if lo > hi else f"{_num(lo)} .. {_num(hi)}"

        return (
            f"across all features: mean {span('mean')}, std {span('std')}, "
            f"min {span('min')}, max {span('max')}, "
            f"{self.kinds['constant']} constant, {self.kinds['near-constant']} near-constant, "
            f"{self.kinds['empty']} empty"
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
    """The first cell left-aligned, numbers right-aligned, a last text column (notes) left."""
    cells = list(cells)[: len([w for w in widths if w])] if not widths[-1] else list(cells)
    parts = [cells[0].ljust(widths[0])] + [
        c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=False)
    ]
    if widths[-1] and len(cells) == len(widths) and not cells[-1][:1].isdigit():
        parts[-1] = cells[-1].ljust(widths[-1])
    return "  ".join(parts).rstrip()


def _summary(stats: Stats, feature_shape: Sequence[int], n: int) -> str:
    src = stats.source or {}
    paths = src.get("paths") or []
    where = ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
    if src.get("dataset"):
        where += f":{src['dataset']}"
    axis = "none" if stats.axis is None else list(stats.axis)
    shape = src.get("shape", "")
    if isinstance(shape, list):  # a length that varied between samples (images) is null
        shape = "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"
    rescale = f", rescale {_fraction(stats.rescale)}" if stats.rescale != 1.0 else ""
    return (
        f"{n} features, feature shape {list(feature_shape)}, axis {axis}, "
        f"ddof {stats.ddof}{rescale}; source {where or '?'} {shape} "
        f"{src.get('dtype', '')}".rstrip()
    )


def _fraction(x: float) -> str:
    """``1/255`` rather than 0.00392157 when a small fraction is exactly the value."""
    from fractions import Fraction

    f = Fraction(x).limit_denominator(1 << 16)
    return str(f) if float(f) == x else f"{x:g}"


DRIFT_COLUMNS = (
    "feature",
    "mean_shift",
    "std_ratio",
    "missing A -> B",
    "min A -> B",
    "max A -> B",
    "changes",
)


def drift_table(
    drift: Drift,
    limit: int | None = 20,
    threshold: float | None = None,
    missing_threshold: float = 0.05,
) -> str:
    """Features worst first: standardized mean shift, std ratio, missing rates, how the range
    moved, and what changed (turned constant, became all-missing...). With a ``threshold``,
    the features that fail it are marked ``!``."""
    order = drift.order if limit is None else drift.order[:limit]
    flagged = (
        set() if threshold is None else set(drift.exceeding(threshold, missing_threshold).tolist())
    )
    idx = order.tolist()
    pick = np.asarray(idx, np.int64)
    (shift,) = format_columns([drift.mean_shift[pick]], 4)
    shift = [
        "+" + t if v > 0 and not t.startswith("+") else t
        for t, v in zip(shift, drift.mean_shift[pick], strict=True)
    ]
    (ratio,) = format_columns([drift.std_ratio[pick]], 4)
    metric = [] if drift.distance is None else format_columns([drift.distance[pick]], 4)
    min_a, min_b = format_columns([drift.min_a[pick], drift.min_b[pick]])
    max_a, max_b = format_columns([drift.max_a[pick], drift.max_b[pick]])
    rows = [
        [
            ("! " if i in flagged else "  ") + drift.names[i],
            *(m[k] for m in metric),
            shift[k],
            ratio[k],
            f"{_percent(drift.missing_a[i])} -> {_percent(drift.missing_b[i])}",
            f"{min_a[k]} -> {min_b[k]}",
            f"{max_a[k]} -> {max_b[k]}",
            ", ".join(drift.changes[i]),
        ]
        for k, i in enumerate(idx)
    ]
    named = [str(drift.metric)] if drift.distance is not None else []
    header = ["  " + DRIFT_COLUMNS[0], *named, *DRIFT_COLUMNS[1:]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_line(header, widths)] + [_line(r, widths) for r in rows]
    lines.append(_drift_summary(drift, threshold, missing_threshold))
    if len(order) < len(drift.order):
        lines.append(f"{len(drift.order) - len(order)} features not shown (use --all)")
    return "\n".join(lines)


def _percent(v: float) -> str:
    if np.isnan(v):
        return "-"
    return f"{100 * v:.1f}%" if v not in (0.0, 1.0) else f"{100 * v:.0f}%"


def _signed(v: float) -> str:
    text = _num(v, 4)
    return "+" + text if v > 0 else text


def _drift_summary(drift: Drift, threshold: float | None, missing_threshold: float) -> str:
    n = len(drift.order)
    text = f"{n} features compared"
    finite = np.flatnonzero(np.isfinite(drift.mean_shift))
    if finite.size:
        worst = int(finite[np.argmax(np.abs(drift.mean_shift[finite]))])
        text += f"; largest finite |mean_shift| {_num(abs(drift.mean_shift[worst]), 4)}"
        text += f" at {drift.names[worst]}"
    changed = sum(1 for c in drift.changes if c)
    if changed:
        text += f"; {changed} changed (constant or all-missing)"
    if threshold is not None:
        k = len(drift.exceeding(threshold, missing_threshold))
        tested = "|mean_shift|" if drift.metric is None else str(drift.metric)
        text += (
            f"; {k} failing --threshold {_num(threshold)} on {tested} "
            f"(or missing rate +-{missing_threshold:.0%}, or a change)"
        )
    return text
