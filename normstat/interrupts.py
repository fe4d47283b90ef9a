"""Interrupts as a flag: the one truth about whether, and by which signal, a run was stopped.

Standard library only and importing nothing from normstat, so the entry point installs it before
numpy loads, and the engine and the sinks check it without importing the CLI.

The handler records the signal first. It then raises :class:`Interrupted` in the main thread, so
a read blocked on stdin stops at once (the blocking call returns EINTR and Python runs the
handler) — except inside :func:`deferred` (an output's commit), where it only records. Work
calls :func:`check` between chunks and right before a commit, so an interrupt that a library
swallowed (one raised inside a weakref callback or ``__del__`` is only printed as "Exception
ignored", which :func:`install` silences) still stops the run there, and no output is ever
committed after a signal. The exit code and the message derive from the flag, and from
:data:`committed`, the outputs renamed into place: the message says whether anything was written.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)

received: list[int] = []
"""The signals seen, first first."""

committed: list[str] = []
"""Outputs committed (renamed into place) by this process, in order."""

announced: list[str] = []
"""Report lines printed after commits ("wrote OUT"): after one, a signal adds no second line."""

_deferring = [0]
_installed: list[bool] = []


class Interrupted(BaseException):
    """A signal stopped the run; a BaseException, so it unwinds through every ``finally``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    received.append(signum)
    if not _deferring[0]:
        raise Interrupted(signum)


def install() -> None:
    """Handle SIGINT, SIGTERM, SIGHUP and SIGQUIT alike; keep swallowed interrupts quiet."""
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    _installed.append(True)
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):  # the flag still has it
            previous(unraisable)

    sys.unraisablehook = hook


def signum() -> int | None:
    return received[0] if received else None


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived: called between chunks and before a commit."""
    if received:
        raise Interrupted(received[0])


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section a signal must not cut in two (a commit): the handler only records."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1


def hold() -> None:
    """From now on the handler only records (the work is over; the exit reads the flag)."""
    _deferring[0] += 1


def record_commit(path: str) -> None:
    """Note an output committed by the command (only when the handlers are installed: a
    library caller has no message to make truthful)."""
    if _installed:
        committed.append(path)


def start_command() -> None:
    """A command begins: it has committed and announced nothing yet."""
    committed.clear()
    announced.clear()


reported: list[str] = []
"""The interrupt line, once the CLI has printed it (so the entry point does not print it again)."""


def report(signum: int) -> str:
    """The interrupt line for the CLI to print; remembered so it is printed once."""
    reported.append(message(signum))
    return reported[-1]


def exit_code(signum: int | None = None) -> int:
    """The shell convention: 128 + the signal (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + (signum or (received[0] if received else signal.SIGINT))


def message(signum: int | None = None) -> str:
    """One line telling the truth about what is on disk."""
    name = signal.Signals(signum or (received[0] if received else signal.SIGINT)).name
    if committed:
        return f"Error: interrupted by {name}; {', '.join(committed)} had already been written"
    return f"Error: interrupted by {name}; no output written"
