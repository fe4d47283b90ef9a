"""WebDataset shards: ``.tar`` files whose image members are the samples, read as a stream.

A shard is read front to back with :mod:`tarfile`'s stream mode (``r|*``: no seeking, no
extraction, gzip and friends understood), which is how WebDataset itself reads them and what works
on a pipe or an object store. Members are images by their extension (``000123.jpg``); the other
members of a sample (``.cls``, ``.json``, ``.txt``) are not pixels and are passed over. Decoding is
the shared pipeline of :mod:`normstat.sources.images`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from normstat import storage
from normstat.errors import DataError
from normstat.sources.images import ImageStream, Payload


class TarShards(ImageStream):
    """Tar shards (``shards-{000..099}.tar``) whose image members form one dataset."""

    format = "webdataset"

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        index = 0
        for path in self.paths:
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


def _members(path: str, suffixes: tuple[str, ...] | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the image members of one shard (or of those ending in ``suffixes``),
    in archive order."""
    from normstat.sources import IMAGE_SUFFIXES

    try:
        fileobj = storage.open_stream(path) if storage.is_uri(path) else None
        with tarfile.open(path, mode="r|*", fileobj=fileobj) as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or base.startswith((".", "_")):
                    continue
                if not base.lower().endswith(suffixes or IMAGE_SUFFIXES):
                    continue
                fp = tar.extractfile(member)
                if fp is not None:
                    yield member.name, fp.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read this tar shard ({exc})", path=path) from None
