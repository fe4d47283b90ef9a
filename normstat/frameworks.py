"""Hand the fitted statistics to a training framework, importing that framework only when asked.

All three build on :func:`normstat.export`, so near-constant features get a scale of 1 everywhere
(only centred, as ``apply`` does) instead of a division by ~0 or by a framework's epsilon.

- :func:`to_sklearn`: a fitted ``sklearn.preprocessing.StandardScaler`` whose ``transform`` equals
  :func:`normstat.transform` on ``x.reshape(n, -1)``;
- :func:`keras_kwargs`: ``keras.layers.Normalization(**keras_kwargs(stats))``;
- :func:`torch_normalize_kwargs`: ``torchvision.transforms.Normalize(**kwargs)``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from normstat.api import export
from normstat.api.inputs import as_stats
from normstat.core.stats import Stats
from normstat.errors import UsageError

if TYPE_CHECKING:
    from sklearn.preprocessing import StandardScaler


def _load(stats: Stats | str | os.PathLike[str]) -> Stats:
    return as_stats(stats)


def to_sklearn(
    stats: Stats | str | os.PathLike[str], *, allow_empty: bool = False
) -> StandardScaler:
    """A ``StandardScaler`` fitted with these statistics, for data of shape (samples, features).

    Only statistics that keep every axis but the sample axis fit scikit-learn's model (one mean
    per column of a 2-D array); per-position image statistics work on ``x.reshape(n, -1)``.
    """
    values = export(_load(stats), "sklearn", allow_empty=allow_empty)
    try:
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise UsageError("to_sklearn needs scikit-learn: pip install scikit-learn") from None
    scaler = StandardScaler()
    scaler.mean_ = np.asarray(values["mean_"], np.float64)
    scaler.var_ = np.asarray(values["var_"], np.float64)
    scaler.scale_ = np.asarray(values["scale_"], np.float64)
    seen = values["n_samples_seen_"]
    scaler.n_samples_seen_ = seen if isinstance(seen, int) else np.asarray(seen, np.int64)
    scaler.n_features_in_ = values["n_features_in_"]
    if "feature_names_in_" in values:
        scaler.feature_names_in_ = np.asarray(values["feature_names_in_"], dtype=object)
    return scaler


def keras_kwargs(
    stats: Stats | str | os.PathLike[str], *, allow_empty: bool = False
) -> dict[str, Any]:
    """``axis``, ``mean`` and ``variance`` for ``keras.layers.Normalization`` (arrays shaped
    like the kept axes; Keras broadcasts them over the reduced ones)."""
    values = export(_load(stats), "keras", allow_empty=allow_empty)
    axis = values["axis"]
    return {
        "axis": None if axis is None else (axis[0] if len(axis) == 1 else tuple(axis)),
        "mean": np.asarray(values["mean"], np.float64),
        "variance": np.asarray(values["variance"], np.float64),
    }


def torch_normalize_kwargs(
    stats: Stats | str | os.PathLike[str], *, allow_empty: bool = False
) -> dict[str, list[float]]:
    """``mean`` and ``std`` lists, one value per channel in channel order, for
    ``torchvision.transforms.Normalize`` (which takes tensors shaped ``(..., C, H, W)``)."""
    values = export(_load(stats), "torch", allow_empty=allow_empty)
    return {
        "mean": [float(v) for v in np.atleast_1d(values["mean"])],
        "std": [float(v) for v in np.atleast_1d(values["std"])],
    }
