"""Shared helpers: an independent float64 two-pass reference, and the example dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits.h5"


def reference(x: np.ndarray, axis: tuple[int, ...] | None, ddof: int = 0) -> dict[str, np.ndarray]:
    """Plain numpy float64 two-pass statistics over the axes NOT kept (Keras semantics)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        return _reference(np.asarray(x, dtype=np.float64), axis, ddof)


def _reference(x: np.ndarray, axis: tuple[int, ...] | None, ddof: int) -> dict[str, np.ndarray]:
    if x.ndim == 1:
        x = x[:, None]
    keep = () if axis is None else tuple(a % x.ndim for a in axis)
    red = tuple(a for a in range(x.ndim) if a not in keep)
    mean = np.nanmean(x, axis=red)
    count = np.sum(~np.isnan(x), axis=red)
    dev = x - np.expand_dims(mean, red)
    m2 = np.nansum(dev * dev, axis=red)
    return {
        "count": count,
        "mean": mean,
        "m2": m2,
        "var": m2 / (count - ddof),
        "min": np.nanmin(x, axis=red),
        "max": np.nanmax(x, axis=red),
    }


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """The example dataset: 1,797 8x8 uint8 images."""
    with h5py.File(DIGITS, "r") as f:
        return f["images"][...]


class CrashAfter:
    """A progress hook that "crashes" a fit after ``limit`` samples (a stand-in for a kill),
    for the checkpoint/resume tests."""

    def __init__(self, limit: int) -> None:
        self.limit, self.done = limit, 0

    def start(self, total: int | None, row_bytes: int = 0) -> None:
        pass

    def advance(self, n: int) -> None:
        self.done += n
        if self.done >= self.limit:
            raise RuntimeError("crash")
