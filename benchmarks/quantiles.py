"""What quantiles cost and how close they are, next to the usual alternatives.

1. Cost: ``normstat.fit`` of one NPY file with and without ``quantiles`` (and ``exact``), on
   uint8 images and on float64 columns, one compute thread, warm page cache; values per second.
2. The glitch case of docs/quantiles.md: 2M normal values and 3 outliers at 1e6. The true q01,
   q50, q99 (``numpy.quantile``) against normstat's summary, normstat ``--exact``, a 5000-bin
   histogram over [min, max] (the running-statistics style of LeRobot / openpi), KLL
   (Apache DataSketches, k=200) and t-digest (fastdigest); the peers are skipped when missing
   (``pip install datasketches fastdigest``).

    python benchmarks/quantiles.py            # about a minute
    python benchmarks/quantiles.py --small    # seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import normstat  # noqa: E402

LEVELS = (0.01, 0.5, 0.99)


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, the runs interleaved (round after round over all of
    them), so that a busy spell of a shared machine falls on every variant alike."""
    for fn in fns.values():
        fn()  # warm-up: page cache, imports
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def cost(n_values: int, repeats: int) -> list[tuple[str, str, float, float]]:
    rng = np.random.default_rng(0)
    data = {
        "uint8 images (N,32,32,3)": rng.integers(0, 256, (n_values // 3072, 32, 32, 3), np.uint8),
        "float64 (N,8)": rng.normal(5.0, 2.0, (n_values // 8, 8)),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in data.items():
            path = os.path.join(tmp, "x.npy")
            np.save(path, x)
            runs = {
                "moments only": {},
                "--quantiles 0.01,0.5,0.99": {"quantiles": LEVELS},
            }
            if x.dtype.kind == "f":
                runs["--quantiles ... --exact"] = {"quantiles": LEVELS, "exact": True}
            fns: dict[str, Callable[[], object]] = {
                label: (lambda kw=kw, p=path: normstat.fit(p, workers=1, **kw))
                for label, kw in runs.items()
            }
            fns.update(_peers(x))
            times = _interleaved(fns, repeats)
            base = times["moments only"]
            rows += [(name, label, x.size / t / 1e6, t / base) for label, t in times.items()]
    return rows


def _peers(x: np.ndarray) -> dict[str, Callable[[], object]]:
    """KLL and t-digest over each feature of the array in memory (no reading), when installed;
    the features are normstat's (the last axis: an image's channels)."""
    cols = x.reshape(-1, x.shape[-1]).astype(np.float64)
    out: dict[str, Callable[[], object]] = {}
    try:
        from datasketches import kll_doubles_sketch

        def kll() -> None:
            for j in range(cols.shape[1]):
                kll_doubles_sketch(200).update(np.ascontiguousarray(cols[:, j]))

        out["peer: KLL k=200 per feature, in memory"] = kll
    except ImportError:
        pass
    try:
        from fastdigest import TDigest

        def tdigest() -> None:
            for j in range(cols.shape[1]):
                TDigest.from_values(cols[:, j])

        out["peer: t-digest per feature, in memory"] = tdigest
    except ImportError:
        pass
    return out


def minmax_histogram_quantiles(x: np.ndarray, bins: int = 5000) -> list[float]:
    """A fixed histogram over [min, max] and the bin edge where the CDF reaches q (openpi's
    ``RunningStats`` / LeRobot's style of streaming quantiles)."""
    hist, edges = np.histogram(x, bins=bins, range=(x.min(), x.max()))
    cum = np.cumsum(hist)
    return [float(edges[np.searchsorted(cum, q * cum[-1])]) for q in LEVELS]


def glitch(n: int) -> list[tuple[str, list[float]]]:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=n), [1e6, 1e6, 1e6]])
    rows: list[tuple[str, list[float]]] = [("numpy.quantile (truth)", list(np.quantile(x, LEVELS)))]
    summary = normstat.fit_arrays(x.reshape(-1, 1), quantiles=LEVELS)
    rows.append(("normstat (summary)", list(summary.quantiles[:, 0])))
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "x.npy"), x.reshape(-1, 1))
        exact = normstat.fit(os.path.join(tmp, "x.npy"), quantiles=LEVELS, exact=True)
    rows.append(("normstat --exact", list(exact.quantiles[:, 0])))
    rows.append(("5000-bin min-max histogram", minmax_histogram_quantiles(x)))
    try:
        from datasketches import kll_doubles_sketch

        kll = kll_doubles_sketch(200)
        kll.update(x)
        rows.append(("KLL k=200 (datasketches)", [kll.get_quantile(q) for q in LEVELS]))
    except ImportError:
        rows.append(("KLL: datasketches not installed", [float("nan")] * 3))
    try:
        from fastdigest import TDigest

        td = TDigest.from_values(x)
        rows.append(("t-digest (fastdigest)", [td.quantile(q) for q in LEVELS]))
    except ImportError:
        rows.append(("t-digest: fastdigest not installed", [float("nan")] * 3))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny data, one repeat")
    args = parser.parse_args()
    small = (300_000, 1, 200_000)
    n_values, repeats, n_glitch = small if args.small else (48_000_000, 5, 2_000_000)
    print("| data | fit | M values/s | time vs moments only |")
    print("|---|---|---:|---:|")
    for name, label, rate, ratio in cost(n_values, repeats):
        print(f"| {name} | {label} | {rate:.1f} | {ratio:.2f}x |")
    print()
    print(f"Glitch case: {n_glitch:,} N(0, 1) values and 3 at 1e6\n")
    print("| method | q01 | q50 | q99 |")
    print("|---|---:|---:|---:|")
    for name, values in glitch(n_glitch):
        print(f"| {name} | " + " | ".join(f"{float(v):.6g}" for v in values) + " |")


if __name__ == "__main__":
    main()
