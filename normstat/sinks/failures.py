"""Write failures as one line naming the output, for the loop that drives every writer.

A full disk or a file-size limit surfaces differently per library (``OSError`` with an errno,
h5py's multi-line messages, a ``RuntimeError`` from h5py's close, pyarrow's own exceptions); the
user sees ``OUT: cannot write the output (File too large)`` for all of them. A closed stdout
pipe is not a write failure: it passes through, for the CLI to end quietly.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

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
    caught: tuple[type[BaseException], ...] = (OSError, RuntimeError, *also, *_arrow())
    try:
        yield
    except BrokenPipeError:
        raise
    except caught as exc:
        raise DataError(f"cannot write the output ({os_reason(exc)})", path=out) from None


def _arrow() -> tuple[type[BaseException], ...]:
    """pyarrow's own write failures, when pyarrow is loaded (else none can occur)."""
    pa = sys.modules.get("pyarrow")
    return () if pa is None else (pa.ArrowException,)
