"""``apply --engine dask``: the apply pipeline's steps, run by tasks that write their own rows.

Two shapes of output:

* one output (``OUT.zarr``, ``OUT.npy``, or a table file from one shard): formats written by
  row ranges (``parallel == "ranges"``) are created empty, then tasks cut at multiples of the
  output's chunk rows (in output coordinates; a task may span two shards) each write their rows,
  so each Zarr chunk has one writer; a table file can only be written whole, from its first row
  (Parquet and Arrow IPC files end with a footer indexing everything before it): one task;
* a directory of parts (several shards, OUT without a known suffix): one part per shard, same
  file name and format, each written as above.

HDF5 is refused: HDF5 has no safe concurrent writers (parallel HDF5 needs MPI and a parallel
build of the library), so many processes writing one file would corrupt it. A part written
whole goes through a temporary file beside it, renamed into place, so a task that Dask runs
twice never leaves a torn part; the client commits the whole output only when every task is done.

OUT in a bucket: a Zarr store is written by the workers into a staging prefix, published by the
client (:mod:`normstat.sinks.prefix`); one ``.npy`` object is one multipart upload that the
client creates, the workers fill part by part (tasks cut at part boundaries) and the client
completes, or aborts on any failure or interrupt; a table file is written by its one task into
a temporary file on the worker's disk and uploaded as the parts of such an upload. A directory
of parts is a staged prefix (as a Zarr store) whose part objects are such uploads, all completed
into the stage once every task is done, then published together.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, replace
from typing import Any

from normstat import interrupts, storage
from normstat.engine.output import ApplyOptions, Output, resolve, write
from normstat.engine.plan import aligned, check_seekable, concat_tasks
from normstat.engine.transform import TransformStep, reads, transformed
from normstat.errors import UsageError
from normstat.sinks import (
    OutputFormat,
    OutputSpec,
    RangeTarget,
    atomic_directory,
    atomic_output_for,
    check_writable,
    named_by_suffix,
    open_writer,
    range_target,
)
from normstat.sources.base import ArraySource
from normstat.sources.ranges import RowRange, open_range


@dataclass(frozen=True)
class RangeJob:
    """Rows from one or more ranges, written into ``target`` from output row ``start``."""

    pieces: tuple[RowRange, ...]
    target: RangeTarget
    start: int
    shown: str

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    def run(self, rows: int, step: TransformStep) -> tuple[int, list[Any]]:
        # sources stay open until written: a table chunk decodes its columns when transformed
        writers: list[Any] = []

        def opener() -> Any:
            writers.append(self.target.open(self.start))
            return writers[-1]

        with contextlib.ExitStack() as opened:
            srcs = [opened.enter_context(contextlib.closing(open_range(p))) for p in self.pieces]
            chunks = (
                c
                for s, p in zip(srcs, self.pieces, strict=True)
                for c in s.chunks(rows, p.start, p.stop)
            )
            items = transformed(chunks, step)
            n = write(opener, items, self.shown)
        return n, list(getattr(writers[0], "receipts", ()))


@dataclass(frozen=True)
class FileJob:
    """A whole table shard written as the file ``target``, through a temporary renamed into
    place when complete (shown to the user as ``shown``). With ``upload`` (``target`` is then
    an object in a bucket), the temporary is on the worker's own disk and goes up as the parts
    of the client's multipart upload, which the client completes or aborts."""

    pieces: tuple[RowRange, ...]  # the whole shard
    target: str
    format: OutputFormat
    spec: OutputSpec
    shown: str
    upload: str = ""  # the client's multipart upload of ``target`` (a bucket), or none
    options: tuple[tuple[str, str], ...] = ()  # storage options (--storage-option)

    @property
    def rows(self) -> int:
        return self.pieces[0].rows

    def run(self, rows: int, step: TransformStep) -> tuple[int, list[Any]]:
        folder = tempfile.mkdtemp(prefix="normstat-") if self.upload else None
        token = secrets.token_hex(4)
        tmp = os.path.join(folder, "part") if folder else temporary(self.target, token)
        src = open_range(self.pieces[0])
        try:
            items = transformed(reads([src], rows, True), step, self.spec.schema)
            n = write(lambda: open_writer(self.format, tmp, self.spec), items, self.shown)
            if not self.upload:
                os.replace(tmp, self.target)
                return n, []
            with storage.using(dict(self.options)):
                return n, storage.upload_file_parts(tmp, self.target, self.upload)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            src.close()
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


def temporary(target: str, token: str, escape: bool = False) -> str:
    """A worker's temporary file for ``target`` (with ``escape``: a glob of all of them)."""
    folder, name = os.path.split(target)
    if escape:
        folder, name = glob.escape(folder), glob.escape(name)
    return os.path.join(folder, f".{name}.{token}.tmp")


@dataclass
class ObjectUpload:
    """The client's multipart upload of one object that a :class:`FileJob` fills: created
    here, completed with the task's receipts, or aborted (as :class:`~normstat.sinks.npy.
    NpyPartsTarget` is for an NPY object)."""

    path: str
    upload: str = ""

    def create(self) -> None:
        self.upload = storage.start_upload(self.path)

    def complete(self, receipts: list[tuple[int, str]]) -> None:
        storage.complete_upload(self.path, self.upload, receipts)

    def abort(self) -> None:
        if self.upload:
            storage.abort_upload(self.path, self.upload)


def _uploading(jobs: list[Any]) -> tuple[list[Any], list[Any]]:
    """``jobs`` writing into a bucket, each with the upload its receipts complete: a table
    file's job gets an upload of its own; a job of an NPY object carries its target's."""
    out, owners = [], []
    for job in jobs:
        owner: Any = None
        if isinstance(job, FileJob):
            owner = ObjectUpload(job.target)
            owner.create()
            job = replace(job, upload=owner.upload, options=storage.current())
        elif hasattr(job.target, "complete"):  # an NPY object's multipart upload
            owner = job.target
        out.append(job)
        owners.append(owner)
    return out, owners


def _run_uploads(run: Any, jobs: list[Any], owners: list[Any], shown: str | None) -> None:
    """Run ``jobs``; then complete every upload with its jobs' receipts (signals deferred),
    or abort them all on any failure or interrupt: no object appears unless all do.
    ``shown``: the output recorded as written (none for the parts of a staged prefix, which
    its publication records)."""
    uploads = list({id(w): w for w in owners if w is not None}.values())
    try:
        done = run(jobs)
        receipts: dict[int, list[tuple[int, str]]] = {id(w): [] for w in uploads}
        for w, (_, got) in zip(owners, done, strict=True):
            if w is not None:
                receipts[id(w)] += got
        with interrupts.deferred():
            interrupts.check()
            for w in uploads:
                w.complete(receipts[id(w)])
            if shown is not None:
                interrupts.record_commit(shown)
    except BaseException:
        with interrupts.deferred():
            for w in uploads:
                w.abort()
        raise


def apply_dask(srcs: list[ArraySource], o: ApplyOptions) -> None:
    """Plan the jobs of OUT (one output, or a directory of parts), commit OUT when all ran."""
    from normstat.engine.dask import run_jobs

    if o.out == "-":
        raise UsageError("-o - streams rows in order from one process; use --engine local")
    if srcs[0].kind == "table":
        check_seekable(srcs)
    parts = len(srcs) > 1 and o.output_format is None and named_by_suffix(o.out) is None
    if parts:  # each part as the shard alone would be written, under the shard's name
        names = part_names(srcs, o.out)
        outs = [resolve([s], replace(o, out=n)) for s, n in zip(srcs, names, strict=True)]
        for s, out in zip(srcs, outs, strict=True):
            _check_parallel(out.format, 1, s.path)
    else:
        outs = [resolve(srcs, o)]
        _check_parallel(outs[0].format, len(srcs), o.out)
    if storage.is_uri(o.out):
        _check_bucket(outs[0].format, o.out)
    check_writable(o.out, force=o.force, sources=srcs)

    def run(jobs: list[Any]) -> list[tuple[int, list[Any]]]:
        try:
            return run_jobs(jobs, o)
        finally:
            for j in jobs:  # temporaries of tasks whose worker died while writing
                if isinstance(j, FileJob) and not j.upload:
                    for left in glob.glob(temporary(j.target, "*", escape=True)):
                        with contextlib.suppress(OSError):
                            os.unlink(left)

    if storage.is_uri(o.out) and not parts and not outs[0].format.directory:  # one object
        jobs, owners = _uploading(_jobs(srcs, o.out, o.out, outs[0], o))
        _run_uploads(run, jobs, owners, o.out)
        return
    if not parts:
        with atomic_output_for(o.out, outs[0].format.name) as tmp:
            run(_jobs(srcs, tmp, o.out, outs[0], o))
        return
    with atomic_directory(o.out) as tmp:  # in a bucket: a staged prefix, published at the end
        jobs = []
        for src, out, name in zip(srcs, outs, names, strict=True):
            jobs += _jobs([src], f"{tmp}/{name}", f"{o.out}/{name}", out, o)
        if not storage.is_uri(o.out):
            run(jobs)
            return
        jobs, owners = _uploading(jobs)  # each part one object of the stage
        _run_uploads(run, jobs, owners, None)


def _jobs(
    srcs: list[ArraySource], path: str, shown: str, out: Output, o: ApplyOptions
) -> list[Any]:
    """The jobs that write ``srcs`` into the one output at ``path`` (created here if written
    by ranges)."""
    if out.batches:
        spec = replace(out.spec, like=None, attrs=dict)  # picklable: it travels to a worker
        where = path if storage.is_uri(path) else os.path.abspath(path)
        return [FileJob((_whole(srcs[0]),), where, out.format, spec, shown)]
    target = range_target(out.format, path, out.spec, o.rows)
    target.create()
    return _range_jobs(srcs, target, shown, out, o)


def _range_jobs(
    srcs: list[ArraySource], target: RangeTarget, shown: str, out: Output, o: ApplyOptions
) -> list[Any]:
    """Jobs of whole multiples of the target's ``align`` rows (the last one shorter)."""
    assert o.task_rows is not None
    rows = aligned(o.task_rows(srcs[0]), target.align, out.spec.shape[0])
    return [RangeJob(pieces, target, start, shown) for pieces, start in concat_tasks(srcs, rows)]


def _whole(src: ArraySource) -> RowRange:
    n = src.shape[0]
    assert n is not None  # a table with row groups / record batches knows its rows
    return RowRange.of(src, 0, n)


def _check_bucket(fmt: OutputFormat, where: str) -> None:
    """Refuse, before anything is read, what workers cannot write into a bucket: one object
    filled by many processes needs a multipart upload that they can all add parts to."""
    if not fmt.directory:
        storage.multipart_scheme(where, f"--engine dask writing {fmt.name} objects")


def _check_parallel(fmt: OutputFormat, shards: int, where: str) -> None:
    """Refuse what workers cannot write, before anything is read or written."""
    if fmt.parallel is None:
        raise UsageError(
            f"--engine dask cannot write {fmt.name}: HDF5 has no safe concurrent writers "
            "(parallel HDF5 needs MPI). Write OUT.zarr or OUT.npy, or use --engine local",
            path=where,
        )
    if fmt.parallel == "whole" and shards > 1:
        raise UsageError(
            "--engine dask writes several shards as a directory of parts, one per shard (a "
            "table file can only be written whole, by one process): give OUT without a "
            "suffix, or use --engine local for one file",
            path=where,
        )


def part_names(srcs: list[ArraySource], out: str) -> list[str]:
    """One part per shard, named as the shard; names must be unique and OUT hold no input."""
    root = os.path.abspath(out.rstrip("/")) + os.sep
    names: dict[str, str] = {}
    for s in srcs:
        path = os.path.abspath(s.path.rstrip("/"))
        if (path + os.sep).startswith(root):
            raise UsageError("the output directory would contain this input", path=s.path)
        name = os.path.basename(path)
        if name in names:
            raise UsageError(
                f"two shards share the file name {name!r} ({names[name]}), so their parts would "
                "collide; rename one, or write a single OUT.zarr",
                path=s.path,
            )
        names[name] = s.path
    return list(names)
