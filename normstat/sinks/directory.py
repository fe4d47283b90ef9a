"""Atomic output for outputs that are directories (a Zarr store, a directory of part files).

As for files, everything is written into a temporary directory beside the target, which is
renamed into place only on success; on any failure, including Ctrl-C, it is removed. Replacing an
existing directory (``--force``) moves the old one aside first, since a rename cannot replace a
non-empty directory; the old one is removed once the new one is in place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from normstat.errors import DataError


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield an empty temporary directory beside ``path``; rename it to ``path`` on success."""
    path = path.rstrip("/") or path
    parent = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise DataError(f"cannot create a directory here ({exc.strerror})", path=path) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give it a normal mode
        yield tmp
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: str, path: str) -> None:
    if not os.path.lexists(path):
        os.replace(tmp, path)
    elif os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)  # a file or link of that name: --force asked to replace it
        os.replace(tmp, path)
    else:
        old = f"{tmp}.old"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
