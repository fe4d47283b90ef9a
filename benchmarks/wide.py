"""Wide features: each step of per-position statistics against the same data's per-channel run.

    python benchmarks/wide.py [--repeats 3] [--images 200] [--rows 8] [--positions 1000000]
        [--scratch DIR] [--small]

Two datasets, each fitted two ways on the very same ``.npy``:

* ``images``: ``(N, 224, 224, 3)`` uint8; per pixel ``--axis 1 --axis 2 --axis 3`` (150,528
  features) against per channel ``--axis 3`` (3 features);
* ``3M``: ``(R, 1,000,000, 3)`` float32; per position ``--axis 1 --axis 2`` (3,000,000 features)
  against per channel ``--axis 2``.

Steps, each a fresh ``python -m normstat`` process of this tree (wall time includes the
interpreter and imports), peak RSS from ``ru_maxrss`` and CPU seconds from ``ru_utime +
ru_stime`` through ``spawn.py``: ``fit`` to JSON and
to NPZ, ``show`` of each, ``apply`` (JSON statistics, to ``.npy``), ``merge`` of the two halves'
JSON artifacts, ``export --to keras``. Runs are interleaved (narrow, wide; then wide, narrow) and
the median of the repeats is reported, with the ratio wide / narrow; the machine is shared.
Artifact sizes are reported as bytes per feature.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPAWN = ROOT / "benchmarks" / "spawn.py"

DATASETS = {
    # name: (axes per position, axes per channel)
    "images": (["1", "2", "3"], ["3"]),
    "3M": (["1", "2"], ["2"]),
}
STEPS = ("fit json", "fit npz", "show json", "show npz", "apply", "merge", "export")


def make_data(scratch: Path, images: int, rows: int, positions: int) -> dict[str, Path]:
    """The two datasets and their halves (for merge), made once per size and reused."""
    rng = np.random.default_rng(0)
    out = {}
    shapes = {"images": ((images, 224, 224, 3), np.uint8), "3M": ((rows, positions, 3), np.float32)}
    for name, (shape, dtype) in shapes.items():
        path = scratch / f"{name}-{shape[0]}-{shape[1]}.npy"
        if not path.exists():
            if dtype == np.uint8:
                x = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                x = rng.standard_normal(shape, dtype=np.float32)
            np.save(path, x)
            half = shape[0] // 2
            np.save(path.with_suffix(".a.npy"), x[:half])
            np.save(path.with_suffix(".b.npy"), x[half:])
        out[name] = path
    return out


def command(step: str, data: Path, axes: list[str], tag: str, scratch: Path) -> list[str]:
    flags = [a for ax in axes for a in ("--axis", ax)]
    art = scratch / f"{data.stem}.{tag}"
    if step.startswith("fit"):
        suffix = step.split()[1]
        return ["fit", str(data), *flags, "-o", f"{art}.{suffix}", "--force", "-q"]
    if step.startswith("show"):
        return ["show", f"{art}.{step.split()[1]}"]
    if step == "apply":
        return ["apply", f"{art}.json", str(data), "-o", f"{art}.out.npy", "--force", "-q"]
    if step == "merge":
        parts = [f"{art}.a.json", f"{art}.b.json"]
        return ["merge", *parts, "-o", f"{art}.merged.json", "--force", "-q"]
    return ["export", f"{art}.json", "--to", "keras"]


def measure(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of ``python -m normstat
    ARGV`` run from this tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        cmd = [sys.executable, str(SPAWN), report.name, sys.executable, "-m", "normstat", *argv]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        got = json.loads(Path(report.name).read_text())
    if got["exit"] != 0:
        raise RuntimeError(f"normstat {' '.join(argv)} exited {got['exit']}")
    return got["wall"], got["maxrss_kb"] / 1024, got["cpu"]


def prepare(data: Path, axes: dict[str, list[str]], scratch: Path) -> None:
    """The halves' artifacts for merge (not timed)."""
    for tag, ax in axes.items():
        for half in ("a", "b"):
            flags = [a for x in ax for a in ("--axis", x)]
            src = data.with_suffix(f".{half}.npy")
            out = scratch / f"{data.stem}.{tag}.{half}.json"
            subprocess.run(
                [sys.executable, "-m", "normstat", "fit", str(src), *flags, "-o", str(out)]
                + ["--force", "-q"],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
            )


def run(scratch: Path, repeats: int, images: int, rows: int, positions: int) -> list[dict]:
    rows_out = []
    for name, path in make_data(scratch, images, rows, positions).items():
        wide_axes, narrow_axes = DATASETS[name]
        axes = {"narrow": narrow_axes, "wide": wide_axes}
        prepare(path, axes, scratch)
        times: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for rep in range(repeats):
            for step in STEPS:
                order = ("narrow", "wide") if rep % 2 == 0 else ("wide", "narrow")
                for tag in order:
                    argv = command(step, path, axes[tag], tag, scratch)
                    times.setdefault((step, tag), []).append(measure(argv))
        features = {
            t: int(np.prod(_feature_shape(scratch / f"{path.stem}.{t}.json"))) for t in axes
        }
        for step in STEPS:
            row = {"data": name, "step": step, "features": features}
            for tag in axes:
                runs = times[(step, tag)]
                row[tag] = (
                    statistics.median(w for w, _, _ in runs),
                    max(m for _, m, _ in runs),
                    statistics.median(c for _, _, c in runs),
                )
            rows_out.append(row)
        for suffix in ("json", "npz"):
            size = (scratch / f"{path.stem}.wide.{suffix}").stat().st_size
            rows_out.append(
                {"data": name, "artifact": suffix, "bytes": size, "features": features["wide"]}
            )
    return rows_out


def _feature_shape(path: Path) -> list[int]:
    with open(path, encoding="utf-8") as fp:
        for line in fp:
            if line.startswith('  "feature_shape"'):
                return json.loads(line.split(": ", 1)[1].rstrip(",\n"))
    raise RuntimeError(f"no feature_shape in {path}")


def print_tables(rows: list[dict]) -> None:
    print(
        "| data | step | per channel s | per position s | ratio | per channel MB | "
        "per position MB | MB beyond per channel, bytes per feature | CPU s per channel, "
        "per position | CPU ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "step" not in r:
            continue
        (tn, mn, cn), (tw, mw, cw) = r["narrow"], r["wide"]
        per = (mw - mn) * 2**20 / r["features"]["wide"]
        print(
            f"| {r['data']} ({r['features']['wide']:,} features) | {r['step']} | {tn:.2f} | "
            f"{tw:.2f} | {tw / tn:.2f}x | {mn:.0f} | {mw:.0f} | {mw - mn:.0f}, {per:.0f} | "
            f"{cn:.2f}, {cw:.2f} | {cw / cn:.2f}x |"
        )
    print()
    print("| data | artifact | bytes | bytes per feature |")
    print("|---|---|---|---|")
    for r in rows:
        if "artifact" in r:
            print(
                f"| {r['data']} | {r['artifact']} | {r['bytes']:,} | "
                f"{r['bytes'] / r['features']:.1f} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--positions", type=int, default=1_000_000, help="Of the 3M dataset.")
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "normstat-wide"))
    parser.add_argument("--small", action="store_true", help="Tiny data, one repeat (a test).")
    args = parser.parse_args(argv)
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    if args.small:
        args.repeats, args.images, args.rows, args.positions = 1, 2, 2, 1000
    print_tables(run(scratch, args.repeats, args.images, args.rows, args.positions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
