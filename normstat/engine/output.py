"""The steps of the apply pipeline that every engine shares: its options, the resolved
output (format, and what its writer needs), and the write step (open, write every item,
close)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from normstat import interrupts
from normstat.engine.transform import TransformStep, output_schema
from normstat.errors import DataError
from normstat.sinks import OutputFormat, OutputSpec, Writer, output_format
from normstat.sinks.failures import write_errors
from normstat.sources.base import ArraySource

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ApplyOptions:
    """How to apply: the step, the output, and who runs it."""

    step: TransformStep
    out: str
    rows: int  # rows per read chunk / batch
    force: bool = False
    output_format: str | None = None  # a name in normstat.sinks.OUTPUTS; None: by OUT's suffix
    engine: str = "local"
    workers: int | None = None  # local: transform threads; dask: processes of a local cluster
    scheduler: str | None = None
    task_rows: Callable[[ArraySource], int] | None = None  # dask: rows per task of a source
    attrs: Callable[[], dict[str, Any]] = field(default=dict)  # recorded by HDF5 / Zarr
    progress: Progress | None = None


@dataclass(frozen=True)
class Output:
    """The resolved output: its format, whether items are record batches, what writers need."""

    format: OutputFormat
    batches: bool  # a table written as a table: record batches, every column
    spec: OutputSpec


def resolve(srcs: list[ArraySource], o: ApplyOptions) -> Output:
    """The output format (:func:`normstat.sinks.output_format`) and what its writer needs;
    the row count is taken only for array outputs, the attributes only by the formats that
    record them."""
    first = srcs[0]
    fmt = output_format(o.out, first.format, first.kind, o.output_format)
    batches = first.kind == "table" and "table" in fmt.kinds
    spec = OutputSpec(
        (0,),
        o.step.dtype,
        like=first if len(srcs) == 1 else None,
        dataset=first.dataset,
        input_format=first.format,
        attrs=o.attrs,
    )
    if batches:
        check_same_schema(srcs)
        schema = output_schema(
            first.schema,  # type: ignore[attr-defined]
            o.step.features or (),
            o.step.dtype,
            o.step.selected,
        )
        return Output(fmt, True, replace(spec, schema=schema))
    shape = (count_rows(srcs, fmt), *first.shape[1:])
    return Output(fmt, False, replace(spec, shape=shape))


def write(opener: Callable[[], Writer], items: Iterable[tuple[int, Any]], where: str) -> int:
    """Open a writer, write every ``(rows, item)`` in order, close it; returns the rows written.

    The engine drives: it pulls items (reads, transformed ahead) and pushes them to the writer.
    Only the writer's own failures become one-line write errors naming ``where``; reading
    errors pass through as they are. On failure the writer is closed quietly (a full disk makes
    closing fail too), so the first error is the one the user sees."""
    with write_errors(where):
        writer = opener()
    done = 0
    try:
        for n, item in items:
            interrupts.check()  # a signal stops the run between blocks, cleaned up as it unwinds
            with write_errors(where):
                writer.write(item)
            done += n
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    with write_errors(where):
        writer.close()
    return done


def count_rows(srcs: list[ArraySource], fmt: OutputFormat) -> int:
    """Rows of all sources, which an array output needs before its first row is written."""
    for s in srcs:
        if s.shape[0] is None and s.path == "-":
            raise DataError(
                f"the row count of a stream is not known before reading it, so it cannot be "
                f"written as {fmt.name}; write a table (.parquet, .arrow, .csv) or '-'",
                path="-",
            )
    return sum(s.shape[0] if s.shape[0] is not None else s.count_rows() for s in srcs)


def check_same_schema(srcs: list[Any]) -> None:
    """One table output needs one schema: every shard must have the first one's columns."""
    first = srcs[0].schema
    for s in srcs[1:]:
        if s.schema.equals(first, check_metadata=False):
            continue
        for a, b in zip(first, s.schema, strict=False):
            if a.name != b.name or a.type != b.type:
                why = (
                    f"column {b.name!r} ({b.type}) where the first shard has {a.name!r} ({a.type})"
                )
                break
        else:
            why = f"{len(s.schema)} columns where the first shard has {len(first)}"
        raise DataError(
            f"has {why}; shards written to one output must have the same columns ({srcs[0].path})",
            path=s.path,
        )
