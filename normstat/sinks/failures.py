"""Write failures as one line naming the output, shared by every writer's drive loop.

A full disk or a file-size limit surfaces differently per library (``OSError`` with an errno,
h5py's multi-line messages, a ``RuntimeError`` from h5py's close, pyarrow's own exceptions); the
user sees ``OUT: cannot write the output (File too large)`` for all of them. A closed stdout
pipe is not a write failure: it passes through, for the CLI to end quietly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from normstat import interrupts
from normstat.errors import DataError


def os_reason(exc: BaseException) -> str:
    """One line for an OS-level failure: ``strerror`` when there is an errno, else the first
    line of the message."""
    errno = getattr(exc, "errno", None)
    if errno:
        return os.strerror(errno)
    lines = str(exc).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(exc).__name__


@contextlib.contextmanager
def write_errors(out: str, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a failure of the writer into a :class:`DataError` naming ``out``."""
    caught: tuple[type[BaseException], ...] = (OSError, RuntimeError, *also)  # h5py: RuntimeError
    try:
        yield
    except BrokenPipeError:
        raise
    except caught as exc:
        raise DataError(f"cannot write the output ({os_reason(exc)})", path=out) from None


def drain(
    write: Callable[[Any], None],
    close: Callable[[], None],
    items: Iterable[Any],
    out: str,
    also: tuple[type[BaseException], ...] = (),
) -> None:
    """Write every item, then close. On failure the writer is closed quietly (a full disk makes
    closing fail too), so the first error is the one the user sees. Only the writer's own
    failures are reported as write errors; reading errors pass through as they are."""
    try:
        for item in items:
            interrupts.check()  # a signal stops the run between blocks, cleaned up as it unwinds
            with write_errors(out, also):
                write(item)
    except BaseException:
        with contextlib.suppress(Exception):
            close()
        raise
    with write_errors(out, also):
        close()
