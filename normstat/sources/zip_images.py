"""ZIP archives of image files (``train.zip``: an image folder zipped), read without extracting.

A member is an image by its extension; members are read in archive order, each one's bytes read
only when its turn comes, and decoded by the shared pipeline of :mod:`normstat.sources.images`.
The central directory lists the members up front, so the images are counted before reading: a
fit can be checkpointed and run on Dask like an image folder. As in an image folder, an image's
class is the first folder inside the archive (``cat/001.jpg``), for ``apply``'s ``/labels``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence

import numpy as np

from normstat.errors import DataError
from normstat.sources.images import ImageStream, Payload, no_columns

MAX_MEMBER_BYTES = 2**30
"""A member declaring more than this once inflated is refused, before it is read: no image file
is that large, and a hostile archive could declare any size."""


class ZipImages(ImageStream):
    """Image members of one or more ZIP archives, as one dataset."""

    format = "zip-images"

    def _setup(self, columns: Sequence[str] | None) -> None:
        no_columns(columns, self.path)
        self.members = {p: _image_members(p) for p in self.paths}

    def _count(self) -> int:
        return sum(len(m) for m in self.members.values())

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        index = 0
        for path in self.paths:
            names = self.members[path]
            if index + len(names) <= start:  # a whole archive before the start: not opened
                index += len(names)
                continue
            with _open(path) as zf:
                for name in names:
                    if index >= start:
                        yield f"{path}:{name}", _read(zf, name, path)
                    index += 1

    def companions(self) -> dict[str, tuple[np.ndarray, dict[str, object]]]:
        """``/labels``: each image's first folder inside its archive, numbered as
        ``ImageFolder`` numbers class folders (sorted names); none if an image has no folder."""
        names = [n for p in self.paths for n in self.members[p]]
        if not names or any("/" not in n for n in names):
            return {}
        found = [n.split("/", 1)[0] for n in names]
        classes = sorted(set(found))
        index = {c: i for i, c in enumerate(classes)}
        labels = self.kept(np.array([index[c] for c in found], np.int64))
        return {"/labels": (labels, {"classes": classes})}


def _open(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read this ZIP archive ({exc})", path=path) from None


def _image_members(path: str) -> list[str]:
    """The image members' names, in archive order (hidden and ``_``-prefixed entries are not
    data, as in a folder)."""
    from normstat.sources import IMAGE_SUFFIXES

    with _open(path) as zf:
        infos = zf.infolist()
    out = []
    for info in infos:
        parts = info.filename.split("/")
        if info.is_dir() or any(p.startswith((".", "_")) for p in parts if p):
            continue
        if parts[-1].lower().endswith(IMAGE_SUFFIXES):
            out.append(info.filename)
    return out


def _read(zf: zipfile.ZipFile, name: str, path: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise DataError(
            f"member {name} declares {info.file_size} bytes once inflated, more than an image "
            f"file holds ({MAX_MEMBER_BYTES}): refused before reading it",
            path=path,
        )
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return b"damaged member: " + str(exc).encode()  # fails to decode: an error naming it
