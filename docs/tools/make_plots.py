"""Make the example plots in docs/images (run from the repository root, with the plot extra).

    python docs/tools/make_plots.py

- the digits example, per-pixel statistics (real data, examples/digits.h5);
- scikit-learn's bundled wine table (real data, 13 named columns of very different scales);
- synthetic 32x32 RGB images (a seeded gradient + noise, CIFAR-shaped) per channel and per
  position; the titles say they are synthetic.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's normstat

import normstat
from normstat.plot import describe, plot

OUT = Path("docs/images")


def synthetic_images(n: int = 2000) -> np.ndarray:
    """CIFAR-shaped uint8 images whose channels and positions differ visibly."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = np.stack([60 + 120 * xx, 90 + 80 * yy, 150 - 60 * (xx + yy) / 2], axis=-1)
    spread = np.stack([20 + 30 * yy, 25 + 0 * xx, 15 + 35 * xx], axis=-1)
    x = base + spread * rng.standard_normal((n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def main() -> None:
    digits = normstat.fit("examples/digits.h5:/images", axis=(1, 2))
    plot(digits, str(OUT / "plot-digits-per-pixel.png"))

    images = synthetic_images()
    per_channel = normstat.fit_arrays(images)
    plot(per_channel, str(OUT / "plot-channels.png"),
         title="synthetic " + describe(per_channel))  # fmt: skip
    per_pixel = normstat.fit_arrays(images, axis=(1, 2, 3))
    plot(per_pixel, str(OUT / "plot-per-pixel-rgb.png"),
         title="synthetic " + describe(per_pixel))  # fmt: skip

    from sklearn.datasets import load_wine

    wine = load_wine()
    table = normstat.fit_arrays(wine.data)
    table.features = list(wine.feature_names)
    table.source.update(paths=["wine.csv (scikit-learn)"], kind="table")
    plot(table, str(OUT / "plot-table.png"))


if __name__ == "__main__":
    main()
