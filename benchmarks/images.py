"""Fit on a folder of JPEGs against the decode floor and a hand-written loop.

    python benchmarks/images.py [--files 2000] [--repeats 3] [--dir /tmp/normstat-bench-images]

Every method runs in its own fresh process (wall time includes the interpreter and imports):

* floor: the decoder normstat uses decodes every file to an array, nothing else (the files are
  RGB), one process: simplejpeg (libjpeg-turbo) when installed, as normstat then uses it; Pillow's
  decode is shown beside it;
* loop: the torchvision-style hand-written loop: decode, then per-image float64 sums and sums of
  squares per channel (numerically naive, shown for speed);
* ``normstat fit DIR --workers 1`` and ``--workers 2``;
* Datumaro's ``compute_image_statistics`` on the folder imported as an ImageNet-style dataset,
  when Datumaro is importable by this interpreter or by the one ``--datumaro-python`` names (it
  pins its own dependencies: a venv of its own keeps them away from normstat's).

Peak RSS: the measured process (``ru_maxrss``), and with psutil the whole process tree (the
decoding workers included), sampled every 20 ms. The images are smooth synthetic photos
(upsampled noise plus grain, 500x375, JPEG quality 90), made once and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOOR = """
import sys, glob, numpy as np
from PIL import Image
for f in sorted(glob.glob(sys.argv[1] + '/*/*.jpg')):
    with Image.open(f) as im:
        im.load()
        x = np.asarray(im)
"""

TURBO_FLOOR = """
import sys, glob, simplejpeg
for f in sorted(glob.glob(sys.argv[1] + '/*/*.jpg')):
    with open(f, 'rb') as fp:
        x = simplejpeg.decode_jpeg(fp.read())
"""

LOOP = """
import sys, glob, numpy as np
from PIL import Image
s = np.zeros(3); q = np.zeros(3); n = 0
for f in sorted(glob.glob(sys.argv[1] + '/*/*.jpg')):
    with Image.open(f) as im:
        x = np.asarray(im.convert('RGB'), dtype=np.float64)
    s += x.sum((0, 1)); q += (x * x).sum((0, 1)); n += x.shape[0] * x.shape[1]
print((s / n).tolist(), (q / n - (s / n) ** 2).tolist())
"""

DATUMARO = """
import sys
from datumaro.components.dataset import Dataset
from datumaro.components.operations import compute_image_statistics
stats = compute_image_statistics(Dataset.import_from(sys.argv[1], "imagenet"))
sub = next(iter(stats["subsets"].values()))
print(sub["image mean (RGB)"], sub["image std (RGB)"])
"""


def make_folder(where: Path, files: int) -> None:
    import numpy as np
    from PIL import Image

    if len(list(where.glob("*/*.jpg"))) == files:
        return
    if where.exists():
        shutil.rmtree(where)
    rng = np.random.default_rng(0)
    for i in range(files):
        folder = where / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        big = np.asarray(small.resize((500, 375), Image.Resampling.BICUBIC), np.int16)
        grain = rng.integers(-8, 9, big.shape, dtype=np.int16)
        pixels = np.clip(big + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def measure(argv: list[str]) -> tuple[float, float, float | None, float]:
    """Wall seconds, peak RSS MB of the process, peak RSS MB of its process tree (psutil), and
    CPU seconds of the tree (user + system: the process and its reaped descendants, or the sum
    of psutil's samples of every process if larger)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    tree_peak = 0
    cpu_by_pid: dict[int, float] = {}
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if psutil is not None:
            try:
                parent = psutil.Process(proc.pid)
                procs = [parent, *parent.children(recursive=True)]
                tree_peak = max(tree_peak, sum(p.memory_info().rss for p in procs))
                for p in procs:
                    t = p.cpu_times()
                    cpu_by_pid[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    own = usage.ru_maxrss / 1024
    # wait4 counts the process and its reaped descendants (forked workers); a fork server's
    # workers are not reaped by it, so they are counted from the samples instead
    cpu = max(usage.ru_utime + usage.ru_stime, sum(cpu_by_pid.values()))
    return wall, own, (tree_peak / 2**20 if psutil is not None else None), cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/normstat-bench-images")
    ap.add_argument("--datumaro-python", help="an interpreter that can import datumaro")
    args = ap.parse_args()
    folder = Path(args.dir)
    make_folder(folder, args.files)
    py = sys.executable
    try:
        import simplejpeg  # noqa: F401

        turbo = True
    except ImportError:
        turbo = False
    methods = {}
    if turbo:
        methods["floor: simplejpeg decode only, 1 process"] = [py, "-c", TURBO_FLOOR, str(folder)]
    methods |= {
        "Pillow decode only, 1 process": [py, "-c", FLOOR, str(folder)],
        "hand-written loop (decode + f64 sums)": [py, "-c", LOOP, str(folder)],
        "normstat fit --workers 1": [
            py,
            "-m",
            "normstat",
            "fit",
            str(folder),
            "--workers",
            "1",
            "-q",
            "-o",
            os.devnull,
        ],  # fmt: skip
        "normstat fit --workers 2": [
            py,
            "-m",
            "normstat",
            "fit",
            str(folder),
            "--workers",
            "2",
            "-q",
            "-o",
            os.devnull,
        ],  # fmt: skip
    }
    dm = args.datumaro_python or py
    if subprocess.run([dm, "-c", "import datumaro"], capture_output=True).returncode == 0:
        methods["peer: Datumaro compute_image_statistics"] = [dm, "-c", DATUMARO, str(folder)]
    runs: dict[str, list[tuple[float, float, float | None, float]]] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for name, argv in methods.items():  # interleaved, so drift hits every method alike
            runs[name].append(measure(argv))
    floor = statistics.median(r[0] for r in runs[next(iter(methods))])
    floor_cpu = statistics.median(r[3] for r in runs[next(iter(methods))])
    print(f"{args.files} JPEGs 500x375, median of {args.repeats}, {os.cpu_count()} cores\n")
    print(
        "| method | median s | images/s | floor / method (wall) | CPU s | floor / method (CPU) "
        "| peak RSS MB (process) | (tree) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[3] for r in rs)
        own = max(r[1] for r in rs)
        tree = [r[2] for r in rs if r[2] is not None]
        tree_s = f"{max(tree):.0f}" if tree else "-"
        print(
            f"| {name} | {wall:.2f} | {args.files / wall:,.0f} | {floor / wall:.0%} | "
            f"{cpu:.2f} | {floor_cpu / cpu:.0%} | {own:.0f} | {tree_s} |"
        )
    print(json.dumps({k: [list(r) for r in v] for k, v in runs.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
