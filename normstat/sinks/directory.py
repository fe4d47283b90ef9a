"""The commit protocol of :mod:`normstat.sinks.atomic` for outputs that are directories (a Zarr
store, a directory of part files).

Everything is written into a hidden temporary directory beside the target; on any failure,
including an interrupt, it is removed. The commit is one atomic step on Linux: when nothing was
at OUT at the start, ``renameat2(RENAME_NOREPLACE)`` (fails if OUT appeared meanwhile); when a
directory was there (``--force``), ``renameat2(RENAME_EXCHANGE)`` swaps the two, then the old
tree, now under the temporary name, is removed. Elsewhere, a check-then-rename and a move-aside
are the fallbacks. In a bucket, which has no rename: :mod:`normstat.sinks.prefix`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from normstat import interrupts, storage
from normstat.sinks.atomic import (
    _fsync,
    fsync_tree,
    remove,
    target_of,
    temporary_dir,
)
from normstat.sinks.rename import exchange, rename_noreplace


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield an empty temporary directory beside ``path``; commit it to ``path`` on success."""
    if storage.is_uri(path):  # no rename in a bucket: a staged prefix, published in order
        from normstat.sinks.prefix import staged_prefix

        with staged_prefix(path) as stage:
            yield stage
        return
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
        exchange(tmp, target)  # a file there too (--force): exchanged, then removed
    else:
        rename_noreplace(tmp, target, path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
