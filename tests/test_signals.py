"""Signals, pipes and write failures through the installed command in real processes.

A slow producer feeds an NPY stream into ``normstat`` so a run lasts as long as the test wants;
both are in one process group, which is signalled as a terminal would do on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from processes import apply_past_file_size_limit, interrupt, start_piped

pytestmark = pytest.mark.skipif(
    shutil.which("normstat") is None, reason="needs the installed normstat command"
)

PRODUCER = """
import sys, time, numpy as np
rows, cols = 200_000, 16
np.lib.format.write_array_header_1_0(sys.stdout.buffer,
    {"descr": "<f8", "fortran_order": False, "shape": (rows, cols)})
rng = np.random.default_rng(0)
for i in range(rows // 1000):
    sys.stdout.buffer.write(rng.standard_normal((1000, cols)).tobytes())
    sys.stdout.buffer.flush()
    if i == 3:  # more than a pipe buffer is written: the consumer is up and reading
        open(sys.argv[1], "w").close()
    time.sleep(0.02)
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stats_file(tmp_path):
    x = np.random.default_rng(1).standard_normal((100, 16))
    np.save(tmp_path / "train.npy", x)
    subprocess.run(
        ["normstat", "fit", "train.npy", "-o", "stats.json", "-q"], cwd=tmp_path, check=True
    )
    return tmp_path / "stats.json"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("command", ["fit", "apply"])
def test_signal_stops_cleanly(tmp_path, stats_file, sig, code, command):
    out = tmp_path / ("out.json" if command == "fit" else "out.npy")
    out.write_bytes(b"pre-existing output")
    before = {p.name: _digest(p) for p in tmp_path.iterdir()}
    if command == "fit":
        args = ["fit", "-", "--input-format", "npy", "--chunk-size", "1000", "-o", out.name]
        args.append("--force")
    else:
        args = [
            "apply",
            "stats.json",
            "-",
            "--input-format",
            "npy",
            "--chunk-size",
            "1000",
            "-o",
            out.name,
            "--force",
        ]
    producer, proc = start_piped(PRODUCER, args, tmp_path, stdout=subprocess.PIPE)
    delay = float(np.random.default_rng(sig + len(command)).uniform(0.2, 1.5))
    time.sleep(delay)
    stopped = interrupt(producer, proc, sig, code)
    assert stopped < 1.0, f"took {stopped:.2f}s to stop"
    after = {p.name: _digest(p) for p in tmp_path.iterdir()}
    assert after == before  # no temp file left, input and pre-existing output untouched


def test_closed_stdout_pipe_ends_quietly(tmp_path, stats_file):
    np.save(tmp_path / "x.npy", np.random.default_rng(2).standard_normal((200_000, 16)))
    proc = subprocess.run(
        "normstat apply stats.json x.npy -o - --chunk-size 1000 | head -c 100 > /dev/null; "
        "exit ${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr
    assert proc.stderr.strip() == ""
    assert proc.returncode in (0, 1)


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_file_size_limit_gives_one_line_and_no_partial_output(tmp_path, stats_file, suffix):
    np.save(tmp_path / "x.npy", np.random.default_rng(3).standard_normal((100_000, 16)))
    apply_past_file_size_limit(tmp_path, "stats.json", "x.npy", f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "train.npy", "x.npy"]
