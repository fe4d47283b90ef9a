"""WebDataset shards: ``.tar`` files whose image members are the samples, read as a stream.

A shard is read front to back with :mod:`tarfile`'s stream mode (``r|*``: no seeking, no
extraction, gzip and friends understood), which is how WebDataset itself reads them and what works
on a pipe or an object store. Members are images by their extension (``000123.jpg``); the other
members of a sample (``.cls``, ``.json``, ``.txt``) are not pixels and are passed over. Decoding is
the shared pipeline of :mod:`normstat.sources.images`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from normstat import storage
from normstat.errors import DataError
from normstat.sources.images import ImageStream, Payload, no_columns


class TarShards(ImageStream):
    """Tar shards (``shards-{000..099}.tar``) whose image members form one dataset.

    Local uncompressed shards are counted from their member headers when opened (tar seeks
    over the data between headers: a few kB read per thousand images), so their images are
    numbered up front, as an image folder's are: a Dask task then opens the shard its images
    start in and skips the members before them without reading their bytes. A compressed or
    remote shard is counted only by reading it whole: it is streamed, and needs the local
    engine."""

    format = "webdataset"

    def _setup(self, columns: Sequence[str] | None) -> None:
        no_columns(columns, self.path)
        known = self.known if isinstance(self.known, tuple) else None
        self.counts = list(known) if known else [_count_members(p) for p in self.paths]

    def _known(self) -> tuple[int | None, ...]:
        return tuple(self.counts)  # a Dask task does not count the shards again

    def _count(self) -> int | None:
        counts = self.counts
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def local_only_fit(self) -> str | None:
        if self.shape[0] is None:
            return (
                "its images are counted only by reading the shards (compressed or remote "
                "tar files are streamed): use the local engine"
            )
        return None

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        index = 0
        for path, count in zip(self.paths, self.counts, strict=True):
            if count is not None:
                if index + count > start:  # a whole shard before the start is not opened
                    skip = max(start - index, 0)
                    for name, data in _members(path, skip=skip):
                        yield f"{path}:{name}", data
                index += count
                continue
            for name, data in _members(path):
                if index >= start:
                    yield f"{path}:{name}", data
                index += 1

    def companions(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """``/labels`` from each sample's ``.cls`` member (an integer, as WebDataset writes
        class indices), when every image has one; read by one more pass over the shards."""
        from normstat.sources import IMAGE_SUFFIXES

        labels: list[int] = []
        for path in self.paths:
            found: dict[str, int] = {}
            order: list[str] = []
            for name, data in _members(path, (*IMAGE_SUFFIXES, ".cls")):
                folder, _, base = name.rpartition("/")
                stem, _, ext = base.partition(".")  # WebDataset: the key ends at the first dot
                key = f"{folder}/{stem}"
                if ext.lower() == "cls":
                    try:
                        found[key] = int(data.decode().strip())
                    except ValueError:
                        return {}
                else:
                    order.append(key)
            if any(k not in found for k in order):
                return {}
            labels += [found[k] for k in order]
        return {"/labels": (self.kept(np.array(labels, np.int64)), {})}


def _members(
    path: str, suffixes: tuple[str, ...] | None = None, skip: int = 0
) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the image members of one shard (or of those ending in ``suffixes``),
    in archive order; the first ``skip`` of them are passed over without reading their bytes
    (a seekable shard seeks over them)."""
    try:
        fileobj = storage.open_stream(path) if storage.is_uri(path) else None
        with tarfile.open(path, mode="r|*" if skip == 0 else "r:*", fileobj=fileobj) as tar:
            for member in tar:
                if not _wanted(member, suffixes):
                    continue
                if skip:
                    skip -= 1
                    continue
                fp = tar.extractfile(member)
                if fp is not None:
                    yield member.name, fp.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read this tar shard ({exc})", path=path) from None


def _wanted(member: tarfile.TarInfo, suffixes: tuple[str, ...] | None = None) -> bool:
    from normstat.sources import IMAGE_SUFFIXES

    base = member.name.rsplit("/", 1)[-1]
    if not member.isfile() or base.startswith((".", "_")):
        return False
    return base.lower().endswith(suffixes or IMAGE_SUFFIXES)


def _count_members(path: str) -> int | None:
    """The image members of a local uncompressed shard, from its headers alone (tar seeks
    over the data); None for a compressed or remote one (counting would read it whole)."""
    if storage.is_uri(path):
        return None
    try:
        with tarfile.open(path, mode="r:") as tar:
            return sum(1 for member in tar if _wanted(member))
    except tarfile.ReadError:
        return None  # compressed: streamed when read
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read this tar shard ({exc})", path=path) from None
