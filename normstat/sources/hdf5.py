"""HDF5 datasets, read along axis 0 in blocks aligned with the dataset's own chunks."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from normstat import storage
from normstat.errors import DataError, UsageError
from normstat.sources.base import Chunk, rows_for_bytes
from normstat.sources.buffers import BufferPool, pread_into, read_only
from normstat.sources.hdf5_chunks import ChunkReader, chunk_index


def numeric_datasets(f: h5py.File) -> list[str]:
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf" and obj.ndim > 0:
            found.append("/" + name)

    f.visititems(visit)
    return found


CHUNK_CACHE_BYTES = 2**20
"""h5py's chunk cache per open dataset, stated rather than left to the library's default: a
chunk larger than it is decompressed straight into the read buffer, never cached."""

# What a damaged or hostile file can make h5py raise while its metadata is read.
H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError)


def _open_file(path: str) -> h5py.File:
    if storage.is_uri(path):
        return _open_remote(path)[0]
    try:
        return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES)
    except FileNotFoundError:
        raise DataError("no such file", path=path) from None
    except H5_ERRORS as exc:
        raise DataError(f"not a readable HDF5 file ({_reason(exc)})", path=path) from None


def _open_remote(uri: str) -> tuple[h5py.File, Any]:
    """An HDF5 object in a bucket, read by h5py through an fsspec file that fetches
    :data:`normstat.storage.METADATA_BLOCK_SIZE` bytes per GET (HDF5's metadata reads are many
    and small: a block serves many of them), and the file (:meth:`Hdf5Dataset.__init__` widens
    its blocks when h5py is to read the values too)."""
    fp = storage.open_file(uri, storage.METADATA_BLOCK_SIZE, "blockcache")
    try:
        return h5py.File(fp, "r", rdcc_nbytes=CHUNK_CACHE_BYTES), fp
    except H5_ERRORS as exc:
        fp.close()
        raise DataError(f"not a readable HDF5 file ({_reason(exc)})", path=uri) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _inside(directory: str, name: str) -> bool:
    """Whether file ``name`` lies in ``directory`` or below it, symbolic links resolved."""
    full = os.path.realpath(name)
    return os.path.commonpath([full, directory]) == directory


def _external_files(ds: h5py.Dataset) -> list[str]:
    """The files HDF5 will read a dataset's external raw storage from: names as stored,
    relative ones resolved as HDF5 does by default (against $HDF5_EXTFILE_PREFIX, where
    ``${ORIGIN}`` is the file's directory, else the working directory)."""
    dcpl = ds.id.get_create_plist()
    names = [os.fsdecode(dcpl.get_external(i)[0]) for i in range(dcpl.get_external_count())]
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX", "")
    prefix = prefix.replace("${ORIGIN}", os.path.dirname(os.path.abspath(ds.file.filename)))
    return [os.path.join(prefix, n) if prefix else os.path.abspath(n) for n in names]


def _virtual_file(ds: h5py.Dataset, name: str) -> str | None:
    """The file HDF5 will open for a virtual source named ``name``, trying the places it tries
    ($HDF5_VDS_PREFIX, the name itself, the virtual dataset's directory), or None."""
    if name == ".":
        return ds.file.filename
    home = os.path.dirname(os.path.abspath(ds.file.filename))
    prefix = os.environ.get("HDF5_VDS_PREFIX", "").replace("${ORIGIN}", home)
    tail = os.path.basename(name) if os.path.isabs(name) else name
    tries = [os.path.join(prefix, tail)] if prefix else []
    tries += [os.path.abspath(name), os.path.join(home, tail)]
    return next((t for t in tries if os.path.isfile(t)), None)


def check_reach(ds: h5py.Dataset, path: str, dataset: str, allow_external: bool) -> None:
    """Refuse reading files other than ``path`` that the dataset names, unless they lie in its
    directory or ``allow_external``: a crafted file could otherwise make normstat read (and
    report statistics of) any file the user can read, such as ``/etc/passwd``. A virtual
    dataset whose sources are missing would be read as fill values: always refused. A file in
    a bucket may name no other file at all: its names would be read on this machine's disk."""
    if storage.is_uri(path):
        _check_self_contained(ds, path, dataset)
        return
    home = os.path.dirname(os.path.realpath(path))
    reached: list[str] = _external_files(ds)
    for name in reached:
        if not os.path.isfile(name):
            raise DataError(
                f"keeps its values in external file {name}, which is missing",
                path=path,
                dataset=dataset,
            )
    if os.path.realpath(ds.file.filename) != os.path.realpath(path):
        reached.append(ds.file.filename)  # through an external link
    for vs in ds.virtual_sources() if ds.is_virtual else []:
        found = _virtual_file(ds, vs.file_name)
        if found is None or not os.access(found, os.R_OK):
            raise DataError(
                f"is a virtual dataset whose source {vs.file_name} is missing or unreadable "
                "(it would be read as fill values)",
                path=path,
                dataset=dataset,
            )
        reached.append(found)
    outside = [r for r in reached if not _inside(home, r)]
    if outside and not allow_external:
        raise DataError(
            f"reads external file {outside[0]} outside the file's directory; pass "
            "--allow-external if that is intended",
            path=path,
            dataset=dataset,
        )


def _check_self_contained(ds: h5py.Dataset, path: str, dataset: str) -> None:
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count() or ds.is_virtual or ds.file.driver != "fileobj":
        raise DataError(
            "keeps its values in other files (external storage, a link or a virtual "
            "dataset); a file read from a bucket must hold its own values",
            path=path,
            dataset=dataset,
        )


def check_allocated(ds: h5py.Dataset, path: str, dataset: str) -> None:
    """Refuse a dataset whose storage was never (or only partly) written: HDF5 reads it as fill
    values, so a 1 KB file can declare 10^11 rows and keep a fit busy for hours on nothing.
    Chunked: every chunk the shape needs must be stored (compression is no concern: a
    compressed chunk is still one stored chunk). Contiguous: its block must exist."""
    dsid = ds.id
    layout = dsid.get_create_plist().get_layout()
    if ds.size == 0 or ds.is_virtual or dsid.get_create_plist().get_external_count():
        return
    if layout == h5py.h5d.CHUNKED:
        needed = math.prod(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
        stored = dsid.get_num_chunks()
        ok = stored >= needed
    else:
        stored, needed = 0, 1
        ok = layout == h5py.h5d.COMPACT or dsid.get_storage_size() > 0
    if not ok:
        raise DataError(
            f"declares {ds.shape[0]} rows but stores only {dsid.get_storage_size()} bytes"
            + (f" ({stored} of the {needed} chunks its shape needs)" if needed > 1 else "")
            + "; the rest would be read as fill values",
            path=path,
            dataset=dataset,
        )


def real_files(ds: h5py.Dataset, path: str) -> list[str]:
    """:meth:`Hdf5Dataset.files`; relative names are taken from the file's directory and the
    working directory, as HDF5 may look in either."""
    if storage.is_uri(path):
        return [path]  # it names no other file (_check_self_contained)
    names = [ds.file.filename]  # an external link lands in another file
    names += [str(entry[0]) for entry in ds.external or []]
    if ds.is_virtual:
        names += [v.file_name for v in ds.virtual_sources() if v.file_name != "."]
    here = os.path.dirname(os.path.abspath(path))
    found = [path]
    for name in names:
        name = os.fsdecode(name)
        found += [name] if os.path.isabs(name) else [os.path.join(here, name), name]
    return found


def resolve_dataset(f: h5py.File, path: str, dataset: str | None) -> h5py.Dataset:
    """The requested dataset, or the only numeric one; otherwise an error listing them."""
    if dataset is None:
        names = numeric_datasets(f)
        if len(names) == 1:
            dataset = names[0]
        else:
            listing = ", ".join(names) if names else "none"
            raise UsageError(
                f"choose a dataset with {path}:/name or --dataset; numeric datasets: {listing}",
                path=path,
            )
    try:
        obj = f.get(dataset)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise DataError(f"cannot open {dataset!r} ({_reason(exc)})", path=path) from None
    if obj is None:
        listing = ", ".join(numeric_datasets(f)) or "none"
        raise UsageError(f"no dataset {dataset!r}; numeric datasets: {listing}", path=path)
    if not isinstance(obj, h5py.Dataset):
        raise DataError("is a group, expected a dataset", path=path, dataset=dataset)
    if obj.dtype.kind not in "biuf":
        raise DataError(
            f"dtype {obj.dtype} is not numeric (expected integers or floats)",
            path=path,
            dataset=dataset,
        )
    if obj.ndim == 0:
        raise DataError(
            "is a scalar, expected an array with a sample axis", path=path, dataset=dataset
        )
    return obj


def contiguous_offset(f: h5py.File, ds: h5py.Dataset, remote: bool = False) -> int | None:
    """Where ``ds``'s values lie in the file, when its rows can be mapped straight from it.

    That holds for a contiguous dataset whose storage is allocated and whose file type is
    exactly the standard type of its numpy dtype (so no conversion is due), in a file opened
    with the default one-file driver: HDF5 then stores the row-major values as one block at
    this offset (user block included). Anything else: None, and h5py reads.
    """
    dsid = ds.id
    if (f.driver != "sec2" and not remote) or ds.dtype.kind not in "iuf":
        return None
    dcpl = dsid.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CONTIGUOUS or dcpl.get_external_count():
        return None  # chunked, compact, virtual, or values kept in other (external) files
    if dsid.get_storage_size() != ds.nbytes or not ds.size:
        return None  # not allocated (read as fill values), or not the plain layout
    if not h5py.h5t.py_create(ds.dtype).equal(dsid.get_type()):
        return None
    return dsid.get_offset()


class Hdf5Dataset:
    format = "hdf5"
    kind = "array"
    features = None

    def __init__(self, path: str, dataset: str | None, allow_external: bool = False) -> None:
        self.path = path
        remote = storage.is_uri(path)
        self._file, fp = _open_remote(path) if remote else (_open_file(path), None)
        try:
            self._ds = self._open(dataset, allow_external)
            self.dataset = self._ds.name
            self.shape = tuple(self._ds.shape)
            self.dtype = self._ds.dtype
            self.storage_chunks = self._ds.chunks
            self.compression = self._ds.compression
            self.compression_opts = self._ds.compression_opts
            self._offset = contiguous_offset(self._file, self._ds, remote=remote)
            index = chunk_index(self._ds) if remote and self._offset is None else None
        except BaseException:
            self._file.close()
            raise
        self._fd: int | Any = -1
        self._chunked: ChunkReader | None = None
        if index is not None:
            # stored chunks fetched by coalesced ranged GETs and decoded here, not by h5py
            self._chunked = ChunkReader(
                index, storage.open_input(path), self.shape[0], path, self.dataset
            )
            return
        if fp is not None and self._offset is None:
            fp.retune(storage.BLOCK_SIZE, storage.CACHE_TYPE)  # h5py reads the values
        if self._offset is not None and remote:
            # a plain block of values: each chunk is one ranged GET of its rows, no h5py
            self._fd = storage.open_input(path)
            if self._fd.size() < self._offset + self._ds.nbytes:
                self._stop_mapping()
            return
        if self._offset is not None:
            try:
                self._fd = os.open(path, os.O_RDONLY)
                if os.fstat(self._fd).st_size < self._offset + self._ds.nbytes:
                    # cut short: h5py reads it, and its error names the file
                    self._stop_mapping()
            except OSError:
                self._stop_mapping()

    def _open(self, dataset: str | None, allow_external: bool) -> h5py.Dataset:
        try:
            ds = resolve_dataset(self._file, self.path, dataset)
            check_reach(ds, self.path, ds.name, allow_external)
            check_allocated(ds, self.path, ds.name)
            return ds
        except H5_ERRORS as exc:
            raise DataError(
                f"not a readable HDF5 dataset ({_reason(exc)})", path=self.path, dataset=dataset
            ) from None

    def check_budget(self, budget: int) -> None:
        """Refuse storage chunks larger than ``budget`` bytes: reading any row of one
        decompresses all of it, so memory would follow the file, not --chunk-size."""
        if not self.storage_chunks:
            return
        nbytes = math.prod(self.storage_chunks) * self.dtype.itemsize
        if nbytes > budget:
            raise DataError(
                f"storage chunk of {list(self.storage_chunks)} is {nbytes} bytes, more than the "
                f"{budget} bytes that one read may hold (max(256 MiB, 4 x --chunk-size)); "
                "rechunk the file (h5repack -l CHUNK=...)",
                path=self.path,
                dataset=self.dataset,
            )

    def files(self) -> list[str]:
        """Every file this dataset is read from (an output must be none of them): this file,
        the file an external link leads to, external raw storage, virtual dataset sources."""
        return real_files(self._ds, self.path)

    @property
    def handle(self) -> h5py.Dataset:
        """The open h5py dataset, for writers that copy its storage layout and attributes."""
        return self._ds

    def preferred_rows(self, target_bytes: int) -> int:
        rows = rows_for_bytes(self.shape, self.dtype, target_bytes)
        if self.storage_chunks:  # whole storage chunks only: no chunk is decompressed twice
            step = self.storage_chunks[0]
            rows = max(step, rows // step * step)
        return rows

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        n = self.shape[0] if stop is None else min(stop, self.shape[0])
        if self._offset is not None:
            yield from self._mapped_chunks(rows, start, n)
            return
        pool = BufferPool()
        for first in range(start, n, rows):
            end = min(first + rows, n)
            buf = pool.get((end - first, *self.shape[1:]), self.dtype)
            try:
                if self._chunked is not None:
                    self._chunked.read(buf, first, min(rows, n - end))
                else:
                    self._ds.read_direct(buf, np.s_[first:end])
            except H5_ERRORS as exc:
                raise self._read_error(first, end, exc) from None
            yield Chunk(buf, self.path, self.dataset, first)
            del buf  # drop our reference, so the pool can tell when the consumer is done

    def _mapped_chunks(self, rows: int, start: int, n: int) -> Iterator[Chunk]:
        """Chunks read straight from the file's block of values with ``pread`` into reused
        buffers, bypassing h5py's per-call overhead. (A memory map of the same bytes saved the
        copy, but a file truncated under it killed the process with SIGBUS; a read fails with
        a short count, which becomes an error line. See docs/decisions.md.)"""
        assert self._offset is not None
        pool = BufferPool()
        for first in range(start, n, rows):
            end = min(first + rows, n)
            buf = pool.get((end - first, *self.shape[1:]), self.dtype)
            at = self._offset + first * (buf[0].nbytes if len(buf) else 0)
            try:
                got = pread_into(self._fd, buf, at)
            except OSError as exc:
                raise self._read_error(first, end, exc) from None
            if got < buf.nbytes:
                raise DataError(
                    f"file is truncated: it ended inside rows {first}:{end} while being read; "
                    "was it rewritten during the run?",
                    path=self.path,
                    dataset=self.dataset,
                )
            yield Chunk(read_only(buf), self.path, self.dataset, first)
            del buf  # the pool reuses it once the consumer is done with the chunk

    def _read_error(self, first: int, end: int, exc: Exception) -> DataError:
        return DataError(
            f"cannot read rows {first}:{end} ({exc})", path=self.path, dataset=self.dataset
        )

    @property
    def direct(self) -> bool:
        """Whether chunks are mapped from the file (see :func:`contiguous_offset`)."""
        return self._offset is not None

    def _stop_mapping(self) -> None:
        """Stop mapping the file; chunks are read through h5py from now on."""
        if not isinstance(self._fd, int):
            self._fd.close()
        elif self._fd >= 0:
            os.close(self._fd)
        self._fd, self._offset = -1, None

    def close(self) -> None:
        self._stop_mapping()
        if self._chunked is not None:
            self._chunked.close()
            self._chunked = None
        self._file.close()
