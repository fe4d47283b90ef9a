"""The benchmark cannot rot: ``benchmarks/run.py --small`` runs end to end and prints its table,
with normstat's variance checked against the exact reference (peers may be missing)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _row(table: str, data: str, method: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == [data, method]:
            return cells
    raise AssertionError(f"no row {data} / {method} in:\n{table}")


def test_small_benchmark_prints_the_table():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--small", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "| data | method | median s | / read+sum | var rel err | peak RSS MB | note |" in out
    for data in ("floats", "images"):
        floor = _row(out, data, "floor: read + f64 sum")
        assert floor[3] == "1.00x"
        lib = _row(out, data, "normstat.fit (library)")
        assert float(lib[2]) > 0 and float(lib[5]) > 0
        assert float(lib[4]) <= (1e-12 if data == "floats" else 1e-15)
        cli = _row(out, data, "normstat fit (CLI)")
        assert float(cli[4]) <= 1e-12
    assert float(_row(out, "-", "normstat --help")[2]) > 0
    # HDF5 apply against the plain copy (the ratio's base) and the copy made durable (its note)
    durable = _row(out, "apply floats", "floor: h5py copy + fsync")
    applied = _row(out, "apply floats", "normstat.apply")
    ratio = re.fullmatch(r"(\d+\.\d\d)x the durable copy \(h5py copy \+ fsync\)", applied[6])
    assert ratio, applied
    a, d, half = float(applied[2]), float(durable[2]), 5e-4  # medians printed to 3 decimals
    assert (a - half) / (d + half) - 0.01 <= float(ratio[1]) <= (a + half) / (d - half) + 0.01
    for data in ("floats", "images", "table"):  # each CLI run paired with a warm library call
        line = re.search(rf"CLI overhead {data}: ([+-]\d+\.\d+) s \(median of 1 paired.*", out)
        assert line, out
        # ... and with an import-only run: the three figures must add up
        imports = float(_row(out, data, "floor: python + imports")[2])
        assert imports > 0
        beyond = re.search(r"beyond the imports: ([+-]\d+\.\d+) s", line.group(0))
        assert beyond and abs(float(line.group(1)) - imports - float(beyond.group(1))) < 2e-3
        assert re.search(r"fixed cost on a tiny file beyond the imports: [+-]\d+\.\d+ s", line[0])


def test_writers_settle_before_each_run_outside_the_timing(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import make_data
    finally:
        sys.path.pop(0)
    paths = make_data.make_all(str(tmp_path), 0.0005)
    settle, repeats = 0.4, 2
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "methods.py"),
            "floor: h5py copy",
            "floats",
            paths["floats"],
            str(repeats),
            str(settle),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    times = json.loads(done.stdout.strip().splitlines()[-1])["times"]
    assert len(times) == repeats
    assert wall >= repeats * settle  # the worker idled before each run ...
    assert sum(times) < wall - repeats * settle  # ... and none of it was timed


def test_lerobot_benchmark_runs_and_agrees_with_its_floor():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lerobot.py"), "--small", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("| normstat.fit")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[1]) > 0
    assert float(cells[-1]) <= 1e-12  # means against the floor's float64 sums
