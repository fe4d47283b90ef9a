"""Framework hand-off: each object or keyword set normalises exactly as normstat.transform."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import normstat
from normstat.errors import UsageError
from normstat.frameworks import keras_kwargs, to_sklearn, torch_normalize_kwargs

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits.h5"


@pytest.fixture(scope="module")
def pixel_stats():
    return normstat.fit(f"{DIGITS}:/images", axis=(1, 2))


def test_sklearn_scaler_transforms_like_normstat(digits, pixel_stats):
    pytest.importorskip("sklearn")
    from sklearn.preprocessing import StandardScaler

    x = digits.reshape(len(digits), -1).astype(np.float64)
    scaler = to_sklearn(pixel_stats)
    ours = normstat.transform(digits, pixel_stats, dtype=np.float64).reshape(len(digits), -1)
    np.testing.assert_array_equal(scaler.transform(x), ours)
    np.testing.assert_allclose(scaler.inverse_transform(ours), x, atol=1e-12)
    # And the attributes are the ones scikit-learn itself learns from the data.
    ref = StandardScaler().fit(x)
    np.testing.assert_allclose(scaler.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(scaler.var_, ref.var_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scaler.scale_, ref.scale_, rtol=1e-12)
    assert scaler.n_samples_seen_ == ref.n_samples_seen_ == 1797
    assert scaler.n_features_in_ == 64
    np.testing.assert_allclose(ref.transform(x), ours, rtol=1e-12, atol=1e-12)


def test_sklearn_keeps_column_names():
    pytest.importorskip("sklearn")
    stats = normstat.fit_arrays(np.array([[1.0, 10.0], [3.0, 30.0]]))
    stats.features = ["a", "b"]
    assert list(to_sklearn(stats).feature_names_in_) == ["a", "b"]


def test_sklearn_refuses_reduced_axes(digits):
    per_column = normstat.fit_arrays(digits)  # axis -1: 8 features from 8x8 samples
    with pytest.raises(UsageError, match="samples of shape \\[8, 8\\] to \\[8\\]"):
        to_sklearn(per_column)


def test_keras_layer_normalises_like_normstat(digits, pixel_stats, monkeypatch):
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
        monkeypatch.setenv("KERAS_BACKEND", "jax")  # Keras 3 runs on any backend
    keras = pytest.importorskip("keras")
    kwargs = keras_kwargs(pixel_stats)
    assert kwargs["axis"] == (1, 2)
    layer = keras.layers.Normalization(**kwargs)
    got = keras.ops.convert_to_numpy(layer(digits.astype(np.float32)))
    want = normstat.transform(digits, pixel_stats, dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Constant pixels (std 0) are only centred, not divided by Keras' epsilon.
    assert np.isfinite(got).all() and np.abs(got).max() < 100


def test_keras_kwargs_values(pixel_stats):
    kwargs = keras_kwargs(pixel_stats)
    np.testing.assert_array_equal(kwargs["mean"], pixel_stats.mean)
    np.testing.assert_array_equal(kwargs["variance"], pixel_stats.scale**2)


def test_torch_kwargs_in_channel_order_for_nchw():
    rng = np.random.default_rng(2)
    x = rng.normal([[[1.0]], [[-5.0]], [[40.0]]], [[[0.5]], [[2.0]], [[9.0]]], (64, 3, 4, 4))
    stats = normstat.fit_arrays(x, axis=1)
    kw = torch_normalize_kwargs(stats)
    ref_mean = x.transpose(1, 0, 2, 3).reshape(3, -1).mean(axis=1)
    ref_std = x.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1)
    np.testing.assert_allclose(kw["mean"], ref_mean, rtol=1e-12)
    np.testing.assert_allclose(kw["std"], ref_std, rtol=1e-12)
    # torchvision's Normalize: (x - mean[c]) / std[c] over (..., C, H, W).
    m, s = np.array(kw["mean"])[:, None, None], np.array(kw["std"])[:, None, None]
    np.testing.assert_allclose((x - m) / s, normstat.transform(x, stats, dtype=np.float64))


def test_torch_refuses_per_position(pixel_stats):
    with pytest.raises(UsageError, match="feature shape \\[8, 8\\]"):
        torch_normalize_kwargs(pixel_stats)
