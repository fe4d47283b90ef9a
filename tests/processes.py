"""Helpers for tests that drive the installed ``normstat`` in real processes: a slow producer
piped into it (both in one process group, signalled as a terminal would on Ctrl-C), a file-size
limit, and the one-error-line checks shared by the signal and write-failure tests."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

MAX_FILE_BYTES = 1_000_000


def start_piped(
    producer_code: str, args: list[str], cwd: Path, stdout: int | None = None
) -> tuple[subprocess.Popen, subprocess.Popen]:
    """``python -c producer_code READY | normstat ARGS`` in one new process group (the
    producer's); returns once the producer has created READY (the consumer is reading)."""
    ready = cwd.parent / f"{cwd.name}.ready"
    producer = subprocess.Popen(
        [sys.executable, "-c", producer_code, str(ready)],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.setpgid(0, 0),
    )
    pgid = producer.pid
    consumer = subprocess.Popen(
        ["normstat", *args],
        stdin=producer.stdout,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=cwd,
        preexec_fn=lambda: os.setpgid(0, pgid),
    )
    assert producer.stdout is not None
    producer.stdout.close()
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the consumer never started reading"
    return producer, consumer


def interrupt(producer: subprocess.Popen, consumer: subprocess.Popen, sig: int, code: int) -> float:
    """Signal the group; check the exit code and the single ``interrupted`` line; return how
    long the consumer took to stop."""
    assert consumer.poll() is None, "the run ended before the signal"
    sent = time.monotonic()
    os.killpg(producer.pid, sig)
    _, err = consumer.communicate(timeout=10)
    stopped = time.monotonic() - sent
    producer.wait(timeout=10)
    assert consumer.returncode == code, err
    only_line(err.decode(), f"Error: interrupted by {signal.Signals(sig).name}")
    return stopped


def only_line(stderr: str, start: str) -> str:
    """The single line of ``stderr``, which must start with ``start``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), stderr
    return lines[0]


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))


def apply_past_file_size_limit(cwd: Path, stats: str, source: str, out: str) -> None:
    """``normstat apply`` whose output outgrows RLIMIT_FSIZE: one line naming OUT, exit 1."""
    proc = subprocess.run(
        ["normstat", "apply", stats, source, "-o", out, "--dtype", "float64"],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    line = only_line(proc.stderr, "Error:")
    assert line == f"Error: {out}: cannot write the output (File too large)"
