"""Write to a temporary file beside the target, rename into place only on success.

A rename within one directory is atomic on POSIX, so readers see either the old file or the
complete new one; on any exception, including KeyboardInterrupt, the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path in the target's directory; rename it to ``path`` on success."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise DataError(f"cannot create a file here ({exc.strerror})", path=path) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new file should honour umask
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
