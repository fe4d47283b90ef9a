"""The commit protocol of :mod:`normstat.sinks.directory` for a directory output (a Zarr store)
written to a bucket, where there is no rename.

1. The writers (the local writer, or Dask workers writing their own chunks) fill a private
   staging prefix beside OUT: ``.{name}.normstat-{pid}.{random}.tmp/``. Whatever was at OUT
   stays as it was, readable, all this time.
2. The switch, with signals deferred, once every writer is done: if OUT held an output at the
   start (``--force``), its metadata objects are deleted first (so from then on no reader opens
   the old array, and none sees old and new chunks mixed under one metadata); then server-side
   copies of the staged objects to OUT: every chunk, then the metadata from the deepest up (an
   array's ``zarr.json`` / ``.zattrs`` then ``.zarray``, the root group's last), so a zarr reader
   finds no array at OUT until all its chunks are there; then the old output's objects that the
   new one did not overwrite are deleted; then the stage.
3. On any failure or interrupt before the switch, every object under the stage is deleted; a
   failure during the switch also deletes what the switch had copied to OUT. Nothing this run did
   not write is ever deleted, except the replaced output, and that only once the new one is
   complete in the stage.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from collections.abc import Iterator

from normstat import interrupts, storage
from normstat.errors import NormstatWarning
from normstat.sinks.rename import appeared

METADATA = {"zarr.json": 1, ".zattrs": 0, ".zarray": 1, ".zgroup": 1, ".zmetadata": 2}
"""Zarr's metadata object names (v3, v2), with their order within one node: attributes before
the object that makes the node an array or group; consolidated metadata last."""


def _depth(key: str) -> int:
    return key.count("/")


def is_metadata(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in METADATA


def metadata_last(keys: list[str]) -> list[str]:
    """Keys relative to a store in publishing order: chunks first, then metadata, deepest
    node first and the root's last."""
    chunks = [k for k in keys if not is_metadata(k)]
    meta = [k for k in keys if is_metadata(k)]
    meta.sort(key=lambda k: (-_depth(k), k.rsplit("/", 1)[0], METADATA[k.rsplit("/", 1)[-1]]))
    return sorted(chunks) + meta


def stage_for(uri: str) -> str:
    parent, _, name = uri.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.normstat-{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _relative(root: str, uris: list[str]) -> list[str]:
    prefix = storage.split(root)[1].rstrip("/") + "/"
    return [storage.split(u)[1][len(prefix) :] for u in uris]


@contextlib.contextmanager
def staged_prefix(uri: str) -> Iterator[str]:
    """Yield a staging prefix (a URI) for the writers; publish it at ``uri`` on success (see
    the module docstring)."""
    target = uri.rstrip("/")
    existed = storage.exists(target)
    stage = ""
    copied: list[str] = []
    done = False
    try:
        stage = stage_for(target)
        yield stage
        with interrupts.deferred():
            interrupts.check()
            _switch(stage, target, existed, copied)
            done = True
            interrupts.record_commit(uri)
    finally:
        if stage:
            with interrupts.deferred():  # a second signal does not cut the clean-up short
                _clean(stage, target, [] if done else copied)


def _clean(stage: str, target: str, copied: list[str]) -> None:
    """Delete the stage and what a failed switch copied; what cannot be deleted (the store
    failing too) is said, never left silently."""
    for where, listed in ((stage, None), (target, copied)):
        if listed == []:
            continue
        try:
            storage.delete_objects(storage.files_under(where) if listed is None else listed)
        except Exception as exc:  # reported; the first error goes on
            what = "the staging prefix" if listed is None else "the objects this run copied to"
            warnings.warn(
                f"could not delete {what} {storage.shown(where)}/ ({exc}); delete them by hand",
                NormstatWarning,
                stacklevel=3,
            )


def _switch(stage: str, target: str, existed: bool, copied: list[str]) -> None:
    new = _relative(stage, storage.files_under(stage))
    old = _relative(target, storage.files_under(target)) if storage.exists(target) else []
    if old and not existed:
        raise appeared(storage.shown(target))
    storage.delete_objects([f"{target}/{k}" for k in old if is_metadata(k)])
    order = metadata_last(new)
    chunks = [k for k in order if not is_metadata(k)]
    for group in (chunks, *([k] for k in order if is_metadata(k))):
        pairs = [(f"{stage}/{k}", f"{target}/{k}") for k in group]
        copied += [b for _, b in pairs]
        storage.copy_objects(pairs)
    written = set(new)
    storage.delete_objects([f"{target}/{k}" for k in old if k not in written])
