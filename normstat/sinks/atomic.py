"""Write to a temporary file beside the target, rename into place only on success.

A rename within one directory is atomic on POSIX, so readers see either the old file or the
complete new one; on any exception, including KeyboardInterrupt, the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from normstat.errors import DataError, UsageError


def check_writable(path: str, *, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Refuse to overwrite an input, or an existing file without ``force``."""
    for src in inputs:
        if (
            src != "-"
            and os.path.exists(src)
            and os.path.exists(path)
            and os.path.samefile(src, path)
        ):
            raise UsageError("refusing to write over an input file", path=path)
    if os.path.exists(path) and not force:
        raise UsageError("output exists (use --force to replace it)", path=path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError("the output's directory does not exist", path=path)


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path in the target's directory; rename it to ``path`` on success.

    The path does not exist yet: it is a name inside a private directory made beside the
    target, and the writer creates the file itself. Why not an empty file from ``mkstemp``, as
    before: a writer opening an existing file truncates it, and ext4 (``auto_da_alloc``) then
    flushes a truncated-and-rewritten file to disk when it is closed. Measured on a 1.5 GB HDF5
    output: the close took 0.6 s, and deleting the file afterwards 2.8 s, against ~0 for both
    with a file created fresh.
    """
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        private = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise DataError(f"cannot create a file here ({exc.strerror})", path=path) from None
    tmp = os.path.join(private, base)
    try:
        yield tmp
        if not os.path.lexists(tmp):  # a writer that wrote nothing: an empty output
            open(tmp, "wb").close()
        os.replace(tmp, path)
    finally:
        _remove(tmp)
        with contextlib.suppress(OSError):
            os.rmdir(private)


def _remove(path: str) -> None:
    """Remove what a failed writer left (a file, or a directory tree)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
