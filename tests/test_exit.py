"""How a CLI process ends: the fast exit that skips interpreter teardown must lose nothing.

``normstat.entry`` leaves with ``os._exit`` after a normal run with no other thread alive, so
each test here checks something a skipped teardown could lose: exit functions, buffered output
on a pipe, the exit code, a thread still running, and the environment set before numpy loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

RUN = "import sys\nsys.argv = ['normstat', *sys.argv[1:]]\nfrom normstat.entry import run\n"


def _normstat(code: str, *args: str, env: dict | None = None, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", RUN + code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


@pytest.fixture
def train(tmp_path):
    x = np.random.default_rng(3).normal(5.0, 2.0, size=(2000, 300))
    np.save(tmp_path / "train.npy", x)
    return tmp_path / "train.npy", x


def test_exit_functions_run_and_stdout_arrives_whole(train):
    """A 300-feature artifact written to stdout (a pipe, so block-buffered) arrives complete,
    and an exit function registered before the run still runs, after it."""
    path, x = train
    code = "import atexit\natexit.register(print, 'EXIT-HOOK')\nrun()"
    done = _normstat(code, "fit", str(path))
    assert done.returncode == 0, done.stderr
    body, _, tail = done.stdout.rpartition("}")
    assert tail.strip() == "EXIT-HOOK"
    art = json.loads(body + "}")
    np.testing.assert_allclose(art["mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(art["var"], x.var(axis=0), rtol=1e-10)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["fit", "missing.npy", "-o", "s.json"], 1, "missing.npy"),
        (["fit", "--ddof", "x", "train.npy"], 2, "'x' is not a valid integer"),
        (["--version"], 0, "normstat"),
    ],
)
def test_exit_code_and_message_survive(train, args, code, message):
    done = _normstat("run()", *args, cwd=train[0].parent)
    assert done.returncode == code
    assert message in (done.stdout + done.stderr)
    assert "Traceback" not in done.stderr


def test_a_thread_still_running_is_waited_for(train):
    """With another thread alive, the process takes Python's normal exit, which joins it."""
    path, _ = train
    code = (
        "import threading, time\n"
        "t = threading.Thread(target=lambda: (time.sleep(0.5), print('THREAD-DONE', flush=True)))\n"
        "t.start()\n"
        "run()"
    )
    done = _normstat(code, "fit", str(path), "-o", str(path.with_suffix(".json")), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "THREAD-DONE"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "2")])
def test_openblas_threads_default_to_one_and_a_user_value_is_kept(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    show = "print(os.environ['OPENBLAS_NUM_THREADS'])"
    code = f"import atexit, os\natexit.register(lambda: {show})\nrun()"
    done = _normstat(code, "--version", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == expected


def test_teardown_is_skipped_after_a_plain_run(train):
    """The point of the fast exit: module teardown (0.05-0.07 s with numpy and h5py loaded) does
    not run, which an object finalised only at teardown shows; with a thread alive it does."""
    path, _ = train
    keep = "class D:\n    def __del__(self): print('TEARDOWN', flush=True)\nd = D()\n"
    args = ("fit", str(path), "-o", str(path.with_suffix(".json")), "-q", "--force")
    fast = _normstat(keep + "run()", *args)
    assert fast.returncode == 0, fast.stderr
    assert "TEARDOWN" not in fast.stdout
    # a thread that lives exactly as long as the main thread (a fixed sleep ended before a fit
    # on a loaded machine did, and the exit was then fast)
    thread = (
        "import threading, time\nm = threading.main_thread()\n"
        "threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(m.is_alive, False)])"
        ".start()\n"
    )
    slow = _normstat(keep + thread + "run()", *args)
    assert slow.returncode == 0, slow.stderr
    assert "TEARDOWN" in slow.stdout
