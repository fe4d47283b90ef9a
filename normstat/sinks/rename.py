"""Renames that never clobber: Linux ``renameat2`` through ctypes (``RENAME_NOREPLACE``: fail
if the target exists; ``RENAME_EXCHANGE``: swap two paths in one step), with portable fallbacks.
The commit step of both atomic outputs (:mod:`normstat.sinks.atomic` for files,
:mod:`normstat.sinks.directory` for directories)."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from normstat.errors import UsageError

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def appeared(path: str) -> UsageError:
    return UsageError(
        "output appeared while writing; not replaced (use --force to replace it)", path=path
    )


def rename_noreplace(src: str, dst: str, path: str) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists, in one step where the kernel can."""
    try:
        _renameat2(src, dst, _RENAME_NOREPLACE)
    except FileExistsError:
        raise appeared(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        if os.path.lexists(dst):
            raise appeared(path) from None
        os.rename(src, dst)


def exchange(tmp: str, target: str) -> None:
    """Swap ``tmp`` and ``target`` atomically; the old one is left at ``tmp``."""
    try:
        _renameat2(tmp, target, _RENAME_EXCHANGE)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        old = f"{tmp}.old"  # no exchange here: move aside, rename, the old tree removed below
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        os.replace(old, tmp)


def _renameat2(src: str, dst: str, flags: int) -> None:
    libc = _libc()
    fn = getattr(libc, "renameat2", None) if libc is not None else None
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        # The process's own symbols include the C library: no ``ctypes.util.find_library``,
        # which spawns ``ldconfig`` (and imports ``subprocess``) at every command's first rename.
        try:
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]
