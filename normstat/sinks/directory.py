"""The commit protocol of :mod:`normstat.sinks.atomic` for outputs that are directories (a Zarr
store, a directory of part files).

Everything is written into a hidden temporary directory beside the target; on any failure,
including an interrupt, it is removed. The commit is one atomic step on Linux: when nothing was
at OUT at the start, ``renameat2(RENAME_NOREPLACE)`` (fails if OUT appeared meanwhile); when a
directory was there (``--force``), ``renameat2(RENAME_EXCHANGE)`` swaps the two, then the old
tree, now under the temporary name, is removed. Elsewhere, a check-then-rename and a move-aside
are the fallbacks.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from typing import Any

from normstat import interrupts
from normstat.sinks.atomic import (
    _fsync,
    appeared,
    fsync_tree,
    remove,
    target_of,
    temporary_dir,
)

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield an empty temporary directory beside ``path``; commit it to ``path`` on success."""
    path = path.rstrip("/") or path
    target = target_of(path)
    existed = os.path.lexists(target)
    tmp = ""
    try:
        with interrupts.deferred():  # made and known, or not made: never leaked
            tmp = temporary_dir(target, "directory")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give it a normal mode
        yield tmp
        with interrupts.deferred():
            interrupts.check()
            fsync_tree(tmp)
            _replace(tmp, target, path, existed)
            _fsync(os.path.dirname(os.path.abspath(target)))
            interrupts.record_commit(path)
    finally:
        if tmp:
            with interrupts.deferred():  # the new tree on failure; the old one after an exchange
                remove(tmp)


def _replace(tmp: str, target: str, path: str, existed: bool) -> None:
    if existed:
        _exchange(tmp, target)  # a file there too (--force): exchanged, then removed
    else:
        rename_noreplace(tmp, target, path)


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


def _exchange(tmp: str, target: str) -> None:
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
        name = ctypes.util.find_library("c")
        try:
            _LIBC.append(ctypes.CDLL(name, use_errno=True) if name else None)
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
