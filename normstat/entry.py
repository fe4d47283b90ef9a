"""The console entry point, and process-level signal handling.

Standard library only, so the handlers are in place before numpy, h5py or click are imported:
a Ctrl-C during start-up then ends with the same one line and exit code as one during the work.
"""

from __future__ import annotations

import signal
import sys


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as KeyboardInterrupt is for SIGINT, so the same
    cleanup (temporary outputs removed, threads cancelled) runs for both."""


_received: list[int] = []  # signals seen, so an interrupt swallowed by a C callback still counts


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def signal_exit(signum: int) -> int:
    """The shell convention: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def interrupted_message(signum: int) -> str:
    return f"Error: interrupted by {signal.Signals(signum).name}; no output written"


def run() -> None:
    """Run the CLI with our signal handling.

    Python installs no SIGTERM handler; ours raises :class:`Terminated` so a kill cleans up like
    Ctrl-C. SIGXFSZ (a file-size limit) is ignored so an oversized write fails with EFBIG and a
    clear error instead of killing the process with a partial file. If a signal arrived but the
    interrupt was swallowed somewhere (a callback inside h5py or pyarrow), the exit code still
    says so: a run that was interrupted never exits 0.
    """
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    code: object = 0
    try:
        from normstat.cli import main

        main(prog_name="normstat")
    except SystemExit as exc:
        code = exc.code
    except (KeyboardInterrupt, Terminated):  # before or after the command itself ran
        signum = _received[-1] if _received else signal.SIGINT
        print(interrupted_message(signum), file=sys.stderr)
        code = signal_exit(signum)
    if _received and code != signal_exit(_received[0]):
        code = signal_exit(_received[0])
    sys.exit(code)
