"""Signals, pipes and write failures through the installed command in real processes.

A slow producer feeds an NPY stream into ``normstat`` so a run lasts as long as the test wants;
both are in one process group, which is signalled as a terminal would do on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

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


def _start(args: list[str], cwd: Path) -> tuple[subprocess.Popen, subprocess.Popen]:
    ready = cwd.parent / f"{cwd.name}.ready"
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(ready)],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.setpgid(0, 0),
    )
    pgid = producer.pid
    consumer = subprocess.Popen(
        ["normstat", *args],
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        preexec_fn=lambda: os.setpgid(0, pgid),
    )
    producer.stdout.close()
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the consumer never started reading"
    return producer, consumer


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
    producer, proc = _start(args, tmp_path)
    delay = float(np.random.default_rng(sig + len(command)).uniform(0.2, 1.5))
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before the signal"
    sent = time.monotonic()
    os.killpg(producer.pid, sig)
    _, err = proc.communicate(timeout=10)
    stopped = time.monotonic() - sent
    producer.wait(timeout=10)
    assert proc.returncode == code, err
    assert stopped < 1.0, f"took {stopped:.2f}s to stop"
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: interrupted by"), err
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


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_file_size_limit_gives_one_line_and_no_partial_output(tmp_path, stats_file, suffix):
    np.save(tmp_path / "x.npy", np.random.default_rng(3).standard_normal((100_000, 16)))
    proc = subprocess.run(
        ["normstat", "apply", "stats.json", "x.npy", "-o", f"out{suffix}", "--dtype", "float64"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"Error: out{suffix}: cannot write the output (File too large)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "train.npy", "x.npy"]
