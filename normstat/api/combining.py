"""Use cases over finished statistics: merge, export to frameworks, diff and drift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from normstat import artifact
from normstat.api.fitting import fit
from normstat.api.options import ChunkSize, ProgressHook, apply_columns, plain
from normstat.core.checks import NanPolicy
from normstat.core.choices import EXPORT_TARGETS
from normstat.core.distances import METRICS
from normstat.core.drift import Drift, check_comparable, compare
from normstat.core.layout import feature_names
from normstat.core.moments import merge_all
from normstat.core.quantiles import merge_levels
from normstat.core.stats import Stats
from normstat.core.transform import transform_params
from normstat.errors import ArtifactError, UsageError


def merge(parts: Sequence[Stats | str]) -> Stats:
    """Exact merge of the statistics of disjoint parts (e.g. shards fitted separately)."""
    loaded = [artifact.load(p) if isinstance(p, str) else p for p in parts]
    names = [p if isinstance(p, str) else f"part {i}" for i, p in enumerate(parts)]
    if not loaded:
        raise UsageError("nothing to merge")
    first = loaded[0]
    for name, s in zip(names[1:], loaded[1:], strict=True):
        for key in ("feature_shape", "axis", "features", "ddof"):
            a, b = plain(getattr(first, key)), plain(getattr(s, key))
            if a != b:
                raise ArtifactError(f"{key} {b} disagrees with {a} of {names[0]}", path=name)
    _check_summaries(loaded, names)
    moments = merge_all((s.moments for s in loaded), first.moments.n_features)
    levels = None
    for s in loaded:
        levels = merge_levels(levels, s.quantile_levels)
    return Stats(
        moments,
        first.feature_shape,
        first.axis,
        first.ddof,
        first.features,
        _merged_source([s.source for s in loaded]),
        levels,
    )


def _check_summaries(loaded: list[Stats], names: list[str]) -> None:
    """Quantiles of a merge need every part's distribution summary, or none at all."""
    has = [s.sketch is not None for s in loaded]
    if any(has) and not all(has):
        name = names[has.index(False)]
        raise ArtifactError(
            "has no distribution summary while other parts do (fit every part with the same "
            "--quantiles / --histogram)",
            path=name,
        )


def _merged_source(sources: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(sources[0])
    out["paths"] = [p for s in sources for p in s.get("paths", [])]
    shapes = [s.get("shape") for s in sources]
    if all(isinstance(sh, list) and sh for sh in shapes):
        out["shape"] = [sum(sh[0] for sh in shapes), *shapes[0][1:]]  # type: ignore[index]
    dtypes = {s.get("dtype") for s in sources}
    if len(dtypes) > 1:
        try:
            out["dtype"] = str(np.result_type(*dtypes))
        except TypeError:
            out["dtype"] = "mixed"
    return out


def export(stats: Stats | str, to: str) -> dict[str, Any]:
    """The statistics as the named framework takes them (plain lists, JSON-ready).

    Near-constant features get variance / std 1, so the framework only centres them, exactly as
    ``apply`` does (Keras would otherwise divide by its epsilon and blow them up).
    """
    if isinstance(stats, str):
        stats = artifact.load(stats)
    mean = np.where(stats.count > 0, stats.mean, 0.0)
    scale = stats.scale
    if to == "keras":
        return {
            "axis": None if stats.axis is None else list(stats.axis),
            "mean": mean.tolist(),
            "variance": (scale * scale).tolist(),
        }
    if to == "torch":
        return {"mean": mean.tolist(), "std": scale.tolist()}
    if to == "sklearn-robust":
        return _robust_export(stats)
    if to == "sklearn":
        counts = stats.count
        seen = (
            int(counts.flat[0])
            if counts.size and (counts == counts.flat[0]).all()
            else counts.tolist()
        )
        return {
            "mean_": mean.tolist(),
            "var_": np.nan_to_num(stats.var).tolist(),
            "scale_": scale.tolist(),
            "n_samples_seen_": seen,
            "n_features_in_": int(np.prod(stats.feature_shape)),
        }
    raise UsageError(f"--to must be one of {', '.join(EXPORT_TARGETS)}, received {to!r}")


def _robust_export(stats: Stats) -> dict[str, Any]:
    """RobustScaler's ``center_`` and ``scale_`` (the IQR, 1 where below 10 eps), as apply uses."""
    params = transform_params(stats, "robust")
    return {
        "center_": params.shift.tolist(),
        "scale_": params.scale.tolist(),
        "quantile_range": [25.0, 75.0],
        "n_features_in_": int(np.prod(stats.feature_shape)),
    }


# ---------------------------------------------------------------------------------------------
# drift


def diff(a: Stats | str, b: Stats | str, *, metric: str | None = None) -> Drift:
    """Drift of statistics B relative to A (e.g. serving vs training), worst feature first;
    ``metric`` (psi, ks, wasserstein, js, hellinger) compares their distribution summaries."""
    sa, sb = (artifact.load(s) if isinstance(s, str) else s for s in (a, b))
    name_a, name_b = (a if isinstance(a, str) else "A"), (b if isinstance(b, str) else "B")
    check_comparable(sa, sb, name_a, name_b)
    _check_metric(metric, ((name_a, sa), (name_b, sb)))
    return compare(sa, sb, feature_names(sa.features, sa.feature_shape), metric)


def _check_metric(metric: str | None, sides: tuple[tuple[str, Stats], ...]) -> None:
    if metric is None:
        return
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, received {metric!r}")
    for name, s in sides:
        if s.sketch is None:
            raise UsageError(
                f"--metric {metric} compares distribution summaries; these statistics have none "
                "(fit with --histogram or --quantiles)",
                path=name,
            )


def drift(
    stats: Stats | str,
    sources: str | Sequence[str],
    *,
    dataset: str | None = None,
    nan: NanPolicy = "skip",
    chunk_size: ChunkSize = None,
    workers: int | None = None,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
    metric: str | None = None,
) -> Drift:
    """Fit SOURCE with the axis and ddof of STATS (a table: its feature columns), then compare it
    to STATS (see :func:`diff`); with a ``metric``, SOURCE's distribution summary too."""
    base = artifact.load(stats) if isinstance(stats, str) else stats
    _check_metric(metric, ((stats if isinstance(stats, str) else "STATS", base),))
    new = fit(
        sources,
        dataset=dataset,
        axis=base.axis,
        ddof=base.ddof,
        nan=nan,
        chunk_size=chunk_size,
        workers=workers,
        input_format=input_format,
        columns=apply_columns(base, columns),
        progress=progress,
        histogram=metric is not None,
    )
    name = stats if isinstance(stats, str) else "STATS"
    check_comparable(base, new, name, ", ".join(new.source.get("paths", [])) or "SOURCE")
    return compare(base, new, feature_names(base.features, base.feature_shape), metric)
