"""HDF5 output that keeps the input file's other datasets and attributes.

The new file is built beside the target: every object of the input except the transformed
dataset is copied with HDF5's own object copy (``h5py.Group.copy``), the transformed dataset is
created at the same path with the input's chunking and compression, keeps its attributes, and
records the statistics it was made with as ``normstat_*`` attributes. An HDF5 attribute lives in
the object header, which holds at most 64 KiB: a value larger than :data:`ATTR_BYTES` (the
per-position statistics of 224x224x3 images are 1.2 MB per array) is written as a dataset under
``/normstat/<dataset>/`` instead, and the attribute ``<name>_dataset`` names it.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from normstat.sinks import OutputSpec


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def copy_except(src: h5py.Group, dst: h5py.Group, skip: str) -> None:
    """Copy ``src`` into ``dst`` recursively, leaving out the object at absolute path ``skip``."""
    _copy_attrs(src, dst)
    for name, obj in src.items():
        path = obj.name
        if path == skip:
            continue
        if isinstance(obj, h5py.Group) and skip.startswith(path.rstrip("/") + "/"):
            copy_except(obj, dst.require_group(name), skip)
        else:
            src.copy(obj, dst, name=name)


class Hdf5Writer:
    """The dataset keeps the input's path (``/data`` for other inputs); from one HDF5 input,
    the file keeps everything else of that input. A source with ``companions`` (an image
    folder: ``/labels`` and its class names) has those datasets written beside the data."""

    def __init__(self, target: str, spec: OutputSpec) -> None:
        self._file = h5py.File(target, "w")
        kwargs: dict[str, Any] = {}
        template = getattr(spec.like, "handle", None) if spec.input_format == "hdf5" else None
        if isinstance(template, h5py.Dataset):
            copy_except(template.file, self._file, template.name)
            kwargs = _storage_like(template, spec.shape)
        name = spec.dataset or "/data"
        self._ds = self._file.create_dataset(name, shape=spec.shape, dtype=spec.dtype, **kwargs)
        if template is not None:
            _copy_attrs(template, self._ds)
        for k, v in spec.attrs().items():
            record(self._ds, k, v)
        companions = getattr(spec.like, "companions", None)
        for path, (values, extra) in (companions() if companions is not None else {}).items():
            ds = self._file.create_dataset(path, data=values)
            for k, v in extra.items():
                ds.attrs[k] = v
        self._start = 0

    def write(self, block: Any) -> None:
        self._ds[self._start : self._start + block.shape[0]] = block
        self._start += block.shape[0]

    def close(self) -> None:
        self._file.close()


ATTR_BYTES = 32 * 1024
"""Values above this are datasets, not attributes (the object header's limit is 64 KiB, shared
by every attribute of the dataset)."""


def record(ds: h5py.Dataset, key: str, value: Any) -> None:
    """``value`` as the attribute ``key`` of ``ds``, or, if it is too large for an attribute,
    as the dataset ``/normstat<ds.name>/<key>`` named by the attribute ``<key>_dataset``."""
    size = len(value.encode()) if isinstance(value, str) else np.asarray(value).nbytes
    path = f"/normstat{ds.name}/{key}"
    for stale in (key, f"{key}_dataset"):  # copied from an input that was itself an output
        if stale in ds.attrs:
            del ds.attrs[stale]
    if path in ds.file:
        del ds.file[path]
    if size <= ATTR_BYTES:
        ds.attrs[key] = value
        return
    ds.file.create_dataset(path, data=value)
    ds.attrs[f"{key}_dataset"] = path


def read_record(ds: h5py.Dataset, key: str) -> Any:
    """What :func:`record` stored under ``key`` (``None`` if nothing was)."""
    if key in ds.attrs:
        return ds.attrs[key]
    path = ds.attrs.get(f"{key}_dataset")
    if path is None:
        return None
    value = ds.file[path][()]
    return value.decode() if isinstance(value, bytes) else value


def _storage_like(ds: h5py.Dataset, shape: tuple[int, ...]) -> dict[str, Any]:
    if ds.chunks is None:  # contiguous in, contiguous out: h5py's auto-chunks halve write speed
        return {}
    if tuple(ds.shape[1:]) != tuple(shape[1:]):
        return {"chunks": True} if shape and shape[0] else {}
    out: dict[str, Any] = {"chunks": ds.chunks}
    if ds.compression:
        out["compression"] = ds.compression
        out["compression_opts"] = ds.compression_opts
    if ds.shuffle:
        out["shuffle"] = True
    return out
