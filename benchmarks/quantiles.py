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


def estimates(x: np.ndarray, tmp: str) -> list[tuple[str, list[float]]]:
    """q01, q50, q99 of ``x`` by every method (the peers when installed)."""
    rows: list[tuple[str, list[float]]] = [("numpy.quantile (truth)", list(np.quantile(x, LEVELS)))]
    summary = normstat.fit_arrays(x.reshape(-1, 1), quantiles=LEVELS)
    rows.append(("normstat (summary)", list(summary.quantiles[:, 0])))
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


def rank_error(x_sorted: np.ndarray, value: float, q: float) -> float:
    """``|F(value) - q| / min(q, 1 - q)``: how far, in rank, an estimate of the ``q`` quantile
    lies from it, as a fraction of the tail (0.01 of the data for q01 and q99): the "44% rank
    error in the 1% tail" of issue 18. ``F`` is the mid-rank of ``value`` in the data."""
    n = x_sorted.size
    lo = np.searchsorted(x_sorted, value, side="left")
    hi = np.searchsorted(x_sorted, value, side="right")
    return abs((lo + hi) / 2 / n - q) / min(q, 1 - q)


def cases(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        f"glitch: {n:,} N(0, 1) values and 3 at 1e6": np.concatenate(
            [rng.normal(size=n), [1e6, 1e6, 1e6]]
        ),
        f"lognormal: {n:,} values, sigma 2": rng.lognormal(0.0, 2.0, n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny data, one repeat")
    parser.add_argument("--accuracy", action="store_true", help="the accuracy tables only")
    args = parser.parse_args()
    small = (300_000, 1, 200_000)
    n_values, repeats, n_glitch = small if args.small else (48_000_000, 5, 2_000_000)
    if not args.accuracy:
        print("| data | fit | M values/s | time vs moments only |")
        print("|---|---|---:|---:|")
        for name, label, rate, ratio in cost(n_values, repeats):
            print(f"| {name} | {label} | {rate:.1f} | {ratio:.2f}x |")
    with tempfile.TemporaryDirectory() as tmp:
        for case, x in cases(n_glitch).items():
            xs = np.sort(x)
            print(f"\n{case}\n")
            print("| method | q01 | q50 | q99 | q01 rank error, of the tail | q99 rank error |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, v in estimates(x, tmp):
                errs = [rank_error(xs, float(v[i]), LEVELS[i]) if np.isfinite(v[i]) else np.nan
                        for i in (0, 2)]  # fmt: skip
                print(
                    f"| {name} | "
                    + " | ".join(f"{float(e):.6g}" for e in v)
                    + " | "
                    + " | ".join(f"{100 * e:.3g}%" for e in errs)
                    + " |"
                )


if __name__ == "__main__":
    main()
