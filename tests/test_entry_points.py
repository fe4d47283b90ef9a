"""`python -m normstat` is the same CLI; --version prints the package version."""

from __future__ import annotations

import subprocess
import sys

import normstat


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def test_python_m_normstat_version():
    res = _run("-m", "normstat", "--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"normstat, version {normstat.__version__}"


def test_python_m_normstat_usage_error_exits_2():
    res = _run("-m", "normstat", "fit")
    assert res.returncode == 2
    assert "Missing argument 'SOURCE...'" in res.stderr


def test_bash_completion_script_is_generated():
    code = "from normstat.cli import main; main(prog_name='normstat')"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"_NORMSTAT_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0
    assert "_normstat_completion()" in res.stdout
