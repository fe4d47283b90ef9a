"""HDF5 output that keeps the input file's other datasets and attributes.

The new file is built beside the target: every object of the input except the transformed
dataset is copied with HDF5's own object copy (``h5py.Group.copy``), the transformed dataset is
created at the same path with the input's chunking and compression, keeps its attributes, and
records the statistics it was made with as ``normstat_*`` attributes.
"""

from __future__ import annotations

from typing import Any

import h5py

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
    the file keeps everything else of that input."""

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
            self._ds.attrs[k] = v
        self._start = 0

    def write(self, block: Any) -> None:
        self._ds[self._start : self._start + block.shape[0]] = block
        self._start += block.shape[0]

    def close(self) -> None:
        self._file.close()


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
