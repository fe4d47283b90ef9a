from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits.h5"


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """The example dataset: 1,797 8x8 uint8 images."""
    with h5py.File(DIGITS, "r") as f:
        return f["images"][...]
