"""Use cases over finished statistics: merge, export to frameworks, diff and drift."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from normstat import storage
from normstat.api.empty import describe_names, empty_features, features_have
from normstat.api.fitting import fit
from normstat.api.inputs import as_stats, stats_name
from normstat.api.options import ChunkSize, ProgressHook, apply_columns, plain, reading
from normstat.core.checks import NanPolicy
from normstat.core.choices import EXPORT_TARGETS
from normstat.core.distances import METRICS
from normstat.core.drift import Drift, check_comparable, compare
from normstat.core.layout import feature_names
from normstat.core.moments import merge_all
from normstat.core.quantiles import merge_levels
from normstat.core.stats import Stats
from normstat.core.transform import transform_params
from normstat.errors import ArtifactError, DataError, NormstatWarning, UsageError


@storage.scoped
def merge(
    parts: Sequence[Stats | str],
    *,
    allow_overlap: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> Stats:
    """Exact merge of the statistics of disjoint parts (e.g. shards fitted separately); a
    part may be a URI (``s3://...``, ``storage_options`` as in ``fit``).

    Parts that share data (the same artifact twice, or a source file with the same fingerprint
    in two of them) are refused unless ``allow_overlap``: their rows would count twice."""
    if isinstance(parts, str | os.PathLike | Stats):
        parts = [parts]
    loaded = [as_stats(p, f"parts[{i}]") for i, p in enumerate(parts)]
    names = [stats_name(p, f"part {i}") for i, p in enumerate(parts)]
    if not loaded:
        raise UsageError("parts: nothing to merge (received an empty sequence)")
    if not allow_overlap:
        _check_disjoint(parts, loaded, names)
    first = loaded[0]
    for name, s in zip(names[1:], loaded[1:], strict=True):
        keys = ("feature_shape", "axis", "features", "ddof", "rescale", "by", "weights")
        for key in (*keys, "feature_groups"):
            a, b = plain(getattr(first, key)), plain(getattr(s, key))
            if a != b:
                raise ArtifactError(f"{key} {b} disagrees with {a} of {names[0]}", path=name)
    _check_summaries(loaded, names)
    moments = merge_all((s.moments for s in loaded), first.moments.n_features)
    levels = None
    for s in loaded:
        levels = merge_levels(levels, s.quantile_levels)
    merged = Stats(
        moments,
        first.feature_shape,
        first.axis,
        first.ddof,
        first.features,
        _merged_source([s.source for s in loaded]),
        first.rescale,
        quantile_levels=levels,
        feature_groups=first.feature_groups,
        by=first.by,
        weights=first.weights,
    )
    _warn_bounded(loaded, merged)
    return merged


def _warn_bounded(loaded: list[Stats], merged: Stats) -> None:
    """Exact quantiles (``fit --exact``) were selected by reading the data again; a merge has
    only the parts' summaries, so its quantiles of float data are within the bound: said on
    stderr, and recorded in the artifact (``quantiles_exact`` false and
    ``quantiles_relative_error``)."""
    error = merged.quantile_error
    if not error or not any(s.exact_quantiles is not None for s in loaded):
        return
    s = merged.sketch
    assert s is not None
    n = int(((s.drop > 0) & (s.total > 0)).sum())
    warnings.warn(
        NormstatWarning(
            f"the parts' quantiles were exact (fit --exact), the merged ones are not: "
            f"they come from the merged summaries, within {error:.3g} (2^-7) of each value "
            f"for {n} feature{'s' if n != 1 else ''} of float data (exact where the data is "
            "integers of 16 bits or fewer); fit the whole with --exact for exact values"
        ),
        stacklevel=2,
    )


def _check_disjoint(parts: Sequence[Stats | str], loaded: list[Stats], names: list[str]) -> None:
    """No artifact twice, and no source (by fingerprint) in two parts."""
    seen: dict[Any, str] = {}
    for part, stats, name in zip(parts, loaded, names, strict=True):
        key = _identity(part)
        if key in seen:
            raise UsageError(
                f"{name} is the same file as {seen[key]}: its rows would count twice" + _ANYWAY
            )
        seen[key] = name
        mine: set[Any] = set()
        for fp in stats.source.get("fingerprints") or []:
            key = _data_key(fp)
            if key in seen and key not in mine:
                raise UsageError(
                    f"{name} and {seen[key]} both hold statistics of {fp.get('path')} (the same "
                    f"size and content): its rows would count twice" + _ANYWAY
                )
            seen[key] = f"{name} ({fp.get('path')})"
            mine.add(key)


_ANYWAY = " (--allow-overlap merges anyway)"


def _identity(part: Stats | str) -> Any:
    if isinstance(part, str) and storage.is_uri(part):
        return ("object", storage.shown(part))
    if isinstance(part, str | os.PathLike):
        st = os.stat(part)
        return ("file", st.st_dev, st.st_ino)
    return ("object", id(part))


def _data_key(fp: dict[str, Any]) -> Any:
    """The same data: the same dataset of a file of the same size and edges (a copy counts)."""
    if fp.get("sha256_edges"):
        return ("data", fp.get("dataset"), fp.get("size"), fp["sha256_edges"])
    return ("path", fp.get("dataset"), fp.get("path"))


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
    prints = [fp for s in sources for fp in s.get("fingerprints") or []]
    if prints or "fingerprints" in out:
        unique = {json.dumps(fp, sort_keys=True): fp for fp in prints}
        out["fingerprints"] = list(unique.values())
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


@storage.scoped
def export(
    stats: Stats | str | os.PathLike[str],
    to: str,
    *,
    allow_empty: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The statistics as the named framework takes them (plain lists, JSON-ready). The CLI's
    ``export`` prints exactly this, so both faces accept and refuse the same statistics.

    Near-constant features get variance / std 1, so the framework only centres them, exactly as
    ``apply`` does (Keras would otherwise divide by its epsilon and blow them up). Features
    without statistics (count 0) are refused unless ``allow_empty`` (then mean 0 and scale 1:
    left unchanged).
    """
    arrays = export_arrays(stats, to, allow_empty=allow_empty, storage_options=storage_options)
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in arrays.items()}


def export_arrays(
    stats: Stats | str | os.PathLike[str],
    to: str,
    *,
    allow_empty: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """:func:`export` with the statistics left as numpy arrays: a wide artifact's CLI export
    writes them as text in blocks (``numtext.dump_array``) instead of as Python lists of
    millions of floats."""
    stats = as_stats(stats)
    if to not in EXPORT_TARGETS:
        raise UsageError(f"to: expected one of {', '.join(EXPORT_TARGETS)}, received {to!r}")
    empty = empty_features(stats)
    if empty and not allow_empty:
        raise DataError(
            f"{features_have(len(empty))} no statistics (count 0): {describe_names(empty)}; "
            f"exporting them would give mean 0 and scale 1 as if fitted (allow_empty / "
            f"--allow-empty to do so anyway)"
        )
    if to in ("lerobot", "openpi"):
        from normstat.api.policy_stats import lerobot_stats, openpi_norm_stats

        return lerobot_stats(stats) if to == "lerobot" else openpi_norm_stats(stats)
    mean = np.where(stats.count > 0, stats.mean, 0.0)
    scale = stats.scale
    if to == "keras":
        return {
            "axis": None if stats.axis is None else list(stats.axis),
            "mean": mean,
            "variance": scale * scale,
        }
    if to == "torch":
        _check_torch_shape(stats)
        return {"mean": mean, "std": scale}
    if to == "sklearn-robust":
        return _robust_export(stats)
    _check_sklearn_shape(stats)
    counts = stats.count
    seen = int(counts.flat[0]) if counts.size and (counts == counts.flat[0]).all() else None
    out: dict[str, Any] = {
        "mean_": mean.reshape(-1),
        "var_": np.nan_to_num(stats.var).reshape(-1),
        "scale_": scale.reshape(-1),
        "n_samples_seen_": counts.reshape(-1) if seen is None else seen,
        "n_features_in_": int(np.prod(stats.feature_shape)),
    }
    if stats.features is not None:
        out["feature_names_in_"] = list(stats.features)
    return out


def _check_torch_shape(stats: Stats) -> None:
    if len(stats.feature_shape) > 1:
        raise UsageError(
            f"to: torchvision Normalize takes one mean and std per channel, but these statistics "
            f"have feature shape {list(stats.feature_shape)}; fit with one kept axis "
            f"(--axis -1 for channels-last data, --axis 1 for channels-first)"
        )


def _check_sklearn_shape(stats: Stats) -> None:
    sample_shape = list((stats.source or {}).get("shape") or [])[1:]
    n_features = math.prod(stats.feature_shape)
    if sample_shape and math.prod(sample_shape) != n_features:
        raise UsageError(
            f"to: StandardScaler keeps one statistic per column of a 2-D array, but these "
            f"statistics reduce samples of shape {sample_shape} to "
            f"{list(stats.feature_shape)}; export to keras or torch, or fit with every axis kept"
        )


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
    sa, sb = as_stats(a, "a"), as_stats(b, "b")
    name_a, name_b = stats_name(a, "A"), stats_name(b, "B")
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
    columns: str | Sequence[str] | None = None,
    column_types: str | Mapping[str, str] | None = None,
    delimiter: str | None = None,
    header: bool = True,
    null_values: str | Sequence[str] | None = None,
    progress: ProgressHook | None = None,
    metric: str | None = None,
) -> Drift:
    """Fit SOURCE with the axis and ddof of STATS (a table: its feature columns; a CSV read with
    ``column_types``, ``delimiter``, ``header``, ``null_values`` as in ``fit``), then compare it
    to STATS (see :func:`diff`); with a ``metric``, SOURCE's distribution summary too."""
    base = as_stats(stats)
    _check_metric(metric, ((stats_name(stats, "STATS"), base),))
    new = fit(
        sources,
        dataset=dataset,
        axis=base.axis,
        ddof=base.ddof,
        nan=nan,
        chunk_size=chunk_size,
        workers=workers,
        input_format=input_format,
        columns=apply_columns(base, reading(columns)[0]),
        column_types=column_types,
        delimiter=delimiter,
        header=header,
        null_values=null_values,
        progress=progress,
        histogram=metric is not None,
    )
    name = stats_name(stats, "STATS")
    check_comparable(base, new, name, ", ".join(new.source.get("paths", [])) or "SOURCE")
    return compare(base, new, feature_names(base.features, base.feature_shape), metric)
