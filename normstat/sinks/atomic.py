"""The output commit protocol, shared by every command that writes (fit, merge, apply, plot,
checkpoints), and the one check of an output path against the inputs.

1. :func:`check_writable`, BEFORE any work: the output's directory exists; OUT is not a file
   that is really read (same st_dev/st_ino after following links, including HDF5 external
   files), and no input lies at or under OUT; an existing regular file or directory at OUT needs
   ``force``. A special file (``/dev/null``, a FIFO, a terminal) needs no ``force``.
2. :func:`atomic_output` / :func:`~normstat.sinks.directory.atomic_directory`: the writer fills
   a hidden temporary ``.{name}.normstat-{pid}.{random}.tmp`` beside the target (a symlink is
   followed: beside its TARGET). Temporaries of dead processes in that directory are removed
   first. A special file is written directly: no temporary, no rename.
3. Commit, with signals deferred: no commit once an interrupt was seen; fsync the data, then
   no-clobber (``link``, or ``renameat2(RENAME_NOREPLACE)`` for a directory) when nothing was
   at OUT at the start, or replace in one step (``rename``, ``RENAME_EXCHANGE``) what was there;
   fsync the directory; record the output in :data:`normstat.interrupts.committed`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from normstat import interrupts, storage
from normstat.errors import DataError, NormstatWarning, UsageError
from normstat.sinks.rename import appeared, rename_noreplace

_TEMP = re.compile(r"^\..+\.normstat-(\d+)\.[^./]*\.tmp(\.old)?$")
_OLD_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8,}\.tmp(\.old)?$")
"""How normstat named its temporaries before they carried the owner's pid
(``.NAME.XXXXXXXX.tmp``, ``tempfile.mkdtemp``'s name; ``.tmp.old``: a replaced Zarr store).
Nothing says whether such a one is stale or still being written by a running (older)
normstat, nor that it is normstat's at all, so it is reported, never removed."""
_reported: set[str] = set()


def real_files(source: Any) -> list[str]:
    """The files a source really reads: ``source.files()`` when it has one, else its path."""
    files = getattr(source, "files", None)
    return list(files()) if callable(files) else [source.path]


def target_of(path: str) -> str:
    """Where writing to ``path`` lands: a symlink's target (followed), else ``path``. A link to
    a special file (``/dev/stdout`` to a pipe) is kept: it is opened, not renamed over."""
    return os.path.realpath(path) if os.path.islink(path) and not is_special(path) else path


def is_special(path: str) -> bool:
    """Is ``path`` (links followed) something other than a regular file or a directory?"""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_writable(
    path: str, *, force: bool, inputs: Sequence[str] = (), sources: Iterable[Any] = ()
) -> None:
    """Refuse an output that is an input or holds one, or exists without ``force``.

    ``inputs`` are paths, ``sources`` opened sources (their :func:`real_files` are checked)."""
    read = [p for p in inputs if p != "-"]
    for src in sources:
        read += [p for p in real_files(src) if p != "-"]
    if storage.is_uri(path):
        _check_not_read_uri(path, read)
        storage.check_output(path, force)
        return
    _check_not_an_input(path, read)
    target = target_of(path)
    if os.path.exists(target) and not is_special(target) and not force:
        raise UsageError("output exists (use --force to replace it)", path=path)
    parent = os.path.dirname(target) or "."  # as the OS resolves it: "nodir/.." is no directory
    if not os.path.isdir(parent):
        raise UsageError("the output's directory does not exist", path=path)
    if not is_special(target) and not os.access(parent, os.W_OK):
        raise UsageError("cannot write in the output's directory (permission denied)", path=path)


def _check_not_an_input(path: str, inputs: list[str]) -> None:
    try:
        out = os.stat(path)
    except OSError:
        out = None
    out_id = None if out is None or is_special(path) else (out.st_dev, out.st_ino)
    out_parent = os.path.realpath(os.path.dirname(os.path.abspath(target_of(path))))
    for src in inputs:
        try:
            st = os.stat(src)
        except OSError:
            continue
        real = os.path.realpath(src)
        if out_id is not None and any(_identity(p) == out_id for p in _self_and_parents(real)):
            what = "an input file" if out_id == (st.st_dev, st.st_ino) else "an input's directory"
            raise UsageError(f"refusing to write over {what} ({src})", path=path)
        if stat.S_ISDIR(st.st_mode) and (out_parent + "/").startswith(real.rstrip("/") + "/"):
            raise UsageError(f"refusing to write inside an input ({src})", path=path)


def _check_not_read_uri(path: str, inputs: list[str]) -> None:
    out = storage.shown(path).rstrip("/")
    for src in inputs:
        if storage.is_uri(src) and out in (storage.shown(src).rstrip("/"), ""):
            raise UsageError(f"refusing to write over an input ({storage.shown(src)})", path=out)


def _self_and_parents(path: str) -> Iterator[str]:
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def temporary_dir(target: str, what: str) -> str:
    """A new hidden temporary directory beside ``target``, stale ones removed first."""
    directory = os.path.dirname(os.path.abspath(target))
    remove_stale(directory)
    base = os.path.basename(target)
    try:
        return tempfile.mkdtemp(
            prefix=f".{base}.normstat-{os.getpid()}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise DataError(f"cannot create a {what} here ({exc.strerror})", path=target) from None


def remove_stale(directory: str) -> None:
    """Remove temporaries left in ``directory`` by normstat processes that are gone (SIGKILL)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _TEMP.match(name)
        if match and not _alive(int(match.group(1))):
            remove(os.path.join(directory, name))
    old = sorted(n for n in names if not _TEMP.match(n) and _OLD_TEMP.match(n))
    if old and directory not in _reported:
        _reported.add(directory)
        shown = ", ".join(old[:3]) + (f" (+{len(old) - 3} more)" if len(old) > 3 else "")
        warnings.warn(
            f"{directory}: {len(old)} temporar{'y' if len(old) == 1 else 'ies'} named as earlier "
            f"normstat versions named them, left as they are: {shown}. Without an owner's pid "
            "they may still be in use; delete them once no normstat runs here.",
            NormstatWarning,
            stacklevel=2,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a path for the writer to create; commit it to ``path`` (see the module docstring).

    The yielded path does not exist yet: it is a name inside a private temporary directory, and
    the writer creates the file itself (a writer that truncates an existing file makes ext4 flush
    it on close: slow). A special file at ``path`` is yielded itself, to be written directly.
    What was at ``path`` when the write began is replaced; anything that appears there during
    the run is not (the commit fails with "appeared while writing").

    A URI (``s3://...``): the writer fills a local temporary file, uploaded at the end as one
    multipart upload completed only then (:func:`normstat.storage.upload`): the object appears
    whole or not at all.
    """
    if storage.is_uri(path):
        with _remote_output(path) as tmp:
            yield tmp
        return
    target = target_of(path)
    if is_special(target):
        yield target
        return
    existed = os.path.lexists(target)
    private = ""
    try:
        with interrupts.deferred():  # made and known, or not made: never leaked
            private = temporary_dir(target, "file")
        tmp = os.path.join(private, os.path.basename(target))
        yield tmp
        if not os.path.lexists(tmp):  # a writer that wrote nothing: an empty output
            open(tmp, "wb").close()
        with interrupts.deferred():
            interrupts.check()
            _fsync(tmp)
            _commit_file(tmp, target, path, replace=existed)
            _fsync(os.path.dirname(os.path.abspath(target)))
            interrupts.record_commit(path)
    finally:
        if private:
            with interrupts.deferred():  # a second signal does not cut the clean-up short
                remove(private)


@contextlib.contextmanager
def _remote_output(uri: str) -> Iterator[str]:
    private = ""
    try:
        with interrupts.deferred():
            private = tempfile.mkdtemp(prefix=f".normstat-{os.getpid()}.", suffix=".tmp")
        tmp = os.path.join(private, storage.basename(uri))
        yield tmp
        if not os.path.lexists(tmp):
            open(tmp, "wb").close()
        interrupts.check()
        storage.upload(tmp, uri)  # completed under deferred signals, aborted on any failure
        interrupts.record_commit(uri)
    finally:
        if private:
            with interrupts.deferred():
                remove(private)


def _commit_file(tmp: str, target: str, path: str, *, replace: bool) -> None:
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # no-clobber: fails if something appeared at OUT meanwhile
    except FileExistsError:
        raise appeared(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        rename_noreplace(tmp, target, path)  # no hard links here (FAT, ...)


def _fsync(path: str) -> None:
    """Flush a file or a directory to disk before it is reported written."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsync every file and directory under ``path`` (a directory output before its commit)."""
    for root, _, names in os.walk(path):
        for name in names:
            _fsync(os.path.join(root, name))
        _fsync(root)


def remove(path: str) -> None:
    """Remove what a failed writer left (a file, or a directory tree)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
