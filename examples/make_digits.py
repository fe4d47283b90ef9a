"""Rebuild examples/digits.h5 from the copy of the UCI optical digits that scikit-learn ships.

The data: 1,797 8x8 images of handwritten digits, pixel values 0..16 (E. Alpaydin and C. Kaynak,
UCI Machine Learning Repository), as distributed with scikit-learn under the BSD-3-Clause licence.
Run once by a developer (needs scikit-learn); the result is committed, so users do not need it.
"""

import h5py
import numpy as np
from sklearn.datasets import load_digits


def main(path: str = "examples/digits.h5") -> None:
    d = load_digits()
    images = d.images.astype(np.uint8)  # values are integers 0..16
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "UCI optical recognition of handwritten digits (8x8, 0..16)"
        f.attrs["source"] = "sklearn.datasets.load_digits (scikit-learn, BSD-3-Clause)"
        ds = f.create_dataset("images", data=images, chunks=(256, 8, 8), compression="gzip")
        ds.attrs["layout"] = "N, H, W"
        f.create_dataset("labels", data=d.target.astype(np.uint8))


if __name__ == "__main__":
    main()
