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

from normstat import interrupts


def run() -> None:
    """Run the CLI with our signal handling.

    SIGINT, SIGTERM, SIGHUP and SIGQUIT are handled alike (:mod:`normstat.interrupts`): a flag
    records the signal and the work stops at the next check, cleaning up as it unwinds. SIGXFSZ
    (a file-size limit) is ignored so an oversized write fails with EFBIG and a clear error
    instead of killing the process with a partial file. If a signal arrived but the
    interrupt was swallowed somewhere (a callback inside h5py or pyarrow), the exit code still
    says so: a run that was interrupted never exits 0.
    """
    # numpy's OpenBLAS starts a thread per core at import, and those threads spin for a while
    # whenever BLAS has run. normstat parallelises over chunks itself and its one BLAS call
    # (a small float32 matrix-vector product for byte data) gains nothing from more threads, so
    # on a 2-core machine the spinning only takes a core from the work (docs/performance.md,
    # "Figures behind the code"). Dask's nanny sets the same for its workers.
    # A value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    interrupts.install()
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    code: int | str | None = 0
    try:
        try:
            from normstat.cli import main

            main(prog_name="normstat")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int | str) or exc.code is None else 1
        finally:
            interrupts.hold()  # the command is over: from here a signal is only recorded
    except (KeyboardInterrupt, interrupts.Interrupted):  # before the command ran, or after
        if not interrupts.received:
            interrupts.received.append(signal.SIGINT)
    if interrupts.received:  # the flag is the truth, whatever was raised or swallowed
        if not interrupts.reported and not (interrupts.committed and interrupts.announced):
            print(interrupts.message(), file=sys.stderr)  # else "wrote OUT" said it
        _exit_now(interrupts.exit_code())
    _finish(code)


def _finish(code: int | str | None) -> None:
    """Exit with ``code``, skipping the interpreter's teardown when it has nothing left to do.

    Tearing down numpy, h5py and click module by module is a noticeable part of the CLI's
    overhead on a small file (docs/performance.md); by then every output is written,
    closed and renamed. So when no other thread is alive and Dask was not used, the exit
    functions (``atexit``, ``weakref.finalize``) run, the two streams are flushed, and the
    process leaves with ``os._exit``. Anything unusual (a thread still running, Dask's own
    shutdown, a stream that fails to flush, a string exit message) takes the normal path, so
    its behaviour is exactly Python's.
    """
    if threading.active_count() > 1 or "distributed" in sys.modules or isinstance(code, str):
        atexit.register(_leave_if_interrupted)  # runs first, after threads are joined
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except (OSError, ValueError, AttributeError):  # AttributeError: a closed stream is None
        atexit.register(_leave_if_interrupted)
        sys.exit(code)  # Python's own shutdown reports a failed flush (exit 120)
    _leave_if_interrupted()
    os._exit((code or 0) & 0xFF)


def _leave_if_interrupted() -> None:
    """A signal recorded after the command ended still sets the exit code (the "wrote" line
    already told what is on disk). Later ones are ignored: Python's own teardown restores the
    default action, and a signal then would kill the process without a word."""
    for signum in interrupts.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if interrupts.received:
        _exit_now(interrupts.exit_code())


def _exit_now(code: int) -> None:
    """Exit without finalising the interpreter, once a signal has stopped the run.

    Outputs are already cleaned up (that happens as the interrupt unwinds), but library threads
    may still be busy: pyarrow's CSV reader reads stdin ahead on a thread of its own, and when
    that thread called into Python during finalisation the process aborted ("PyGILState_Release
    ... finalizing", exit 134) instead of exiting 143 with its one line. Nothing else is left
    to run, so skip finalisation: flush what was printed and leave.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
