"""What a run stopped by a signal raises, says and exits with: shared by the entry point, which
installs the handlers, and the CLI, which reports them. Standard library only."""

from __future__ import annotations

import signal


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as KeyboardInterrupt is for SIGINT, so the same
    cleanup (temporary outputs removed, threads cancelled) runs for both."""


def signal_exit(signum: int) -> int:
    """The shell convention: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def interrupted_message(signum: int) -> str:
    return f"Error: interrupted by {signal.Signals(signum).name}; no output written"
