"""The console entry point, and process-level signal handling.

Standard library only, so the handlers are in place before numpy, h5py or click are imported:
a Ctrl-C during start-up then ends with the same one line and exit code as one during the work.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading

from normstat.interrupts import Terminated, interrupted_message, signal_exit

__all__ = ["Terminated", "interrupted_message", "run", "signal_exit"]


_received: list[int] = []  # signals seen, so an interrupt swallowed by a C callback still counts


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def run() -> None:
    """Run the CLI with our signal handling.

    Python installs no SIGTERM handler; ours raises :class:`Terminated` so a kill cleans up like
    Ctrl-C. SIGXFSZ (a file-size limit) is ignored so an oversized write fails with EFBIG and a
    clear error instead of killing the process with a partial file. If a signal arrived but the
    interrupt was swallowed somewhere (a callback inside h5py or pyarrow), the exit code still
    says so: a run that was interrupted never exits 0.
    """
    # numpy's OpenBLAS starts a thread per core at import, and those threads spin for a while
    # whenever BLAS has run. normstat parallelises over chunks itself and its one BLAS call
    # (a small float32 matrix-vector product for byte data) gains nothing from more threads, so
    # on a 2-core machine the spinning only takes a core from the work: 0.11 CPU-s during the
    # imports, 5% of a fit's samples in a profile. Dask's nanny sets the same for its workers.
    # A value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    code: int | str | None = 0
    try:
        from normstat.cli import main

        main(prog_name="normstat")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int | str) or exc.code is None else 1
    except (KeyboardInterrupt, Terminated):  # before or after the command itself ran
        signum = _received[-1] if _received else signal.SIGINT
        print(interrupted_message(signum), file=sys.stderr)
        code = signal_exit(signum)
    if _received:
        _exit_now(signal_exit(_received[0]))
    _finish(code)


def _finish(code: int | str | None) -> None:
    """Exit with ``code``, skipping the interpreter's teardown when it has nothing left to do.

    Tearing down numpy, h5py and click module by module takes 0.05-0.07 s after every command,
    a fifth of the CLI's whole overhead on a small file; by then every output is written,
    closed and renamed. So when no other thread is alive and Dask was not used, the exit
    functions (``atexit``, ``weakref.finalize``) run, the two streams are flushed, and the
    process leaves with ``os._exit``. Anything unusual (a thread still running, Dask's own
    shutdown, a stream that fails to flush, a string exit message) takes the normal path, so
    its behaviour is exactly Python's.
    """
    if threading.active_count() > 1 or "distributed" in sys.modules or isinstance(code, str):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except (OSError, ValueError):
        sys.exit(code)  # Python's own shutdown reports a failed flush (exit 120)
    os._exit((code or 0) & 0xFF)


def _exit_now(code: int) -> None:
    """Exit without finalising the interpreter, once a signal has stopped the run.

    Outputs are already cleaned up (that happens as the interrupt unwinds), but library threads
    may still be busy: pyarrow's CSV reader reads stdin ahead on a thread of its own, and when
    that thread called into Python during finalisation the process aborted ("PyGILState_Release
    ... finalizing", exit 134) instead of exiting 143 with its one line. Nothing else is left
    to run, so skip finalisation: flush what was printed and leave.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
