"""The command line: click only. Parse, call one :mod:`normstat.api` function, render.

This is the only module that prints or looks at the terminal. Library errors become one
``Error: ...`` line on stderr in one place (:class:`_Group`), with exit 2 for usage errors and 1
for data errors; no traceback reaches the user.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from normstat import __version__, interrupts
from normstat.core.choices import (
    ENGINES,
    EXPORT_TARGETS,
    METHODS,
    METRICS,
    NAN_POLICIES,
    OUTPUT_FORMATS,
)
from normstat.errors import NormstatError, NormstatWarning

if TYPE_CHECKING:
    from normstat.core.drift import Drift
    from normstat.core.stats import Stats


class _Lazy:
    """A module imported on first use: building the commands (and ``--help``) needs none of the
    engine, so numpy, h5py and pyarrow load only when a command runs."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


api = _Lazy("normstat.api")
artifact = _Lazy("normstat.artifact")
report = _Lazy("normstat.report")
_layout = _Lazy("normstat.core.layout")
_atomic = _Lazy("normstat.sinks.atomic")
_failures = _Lazy("normstat.sinks.failures")


class _Failure(click.ClickException):
    """One line, ``Error: ...``, exit 1 (a data error); click declares ``exit_code`` per class."""

    exit_code = 1


class _UsageFailure(_Failure):
    """One line, ``Error: ...``, exit 2 (a usage error)."""

    exit_code = 2


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Library warnings (:class:`NormstatWarning`) as one ``Warning: ...`` line on stderr,
    unless the command runs with ``-q``; any other warning as Python prints it."""
    if not issubclass(category, NormstatWarning):
        _python_showwarning(message, category, *_, **__)
        return
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("quiet"):
        return
    click.echo(f"Warning: {message}", err=True)


_python_showwarning = warnings.showwarning


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        interrupts.start_command()
        with warnings.catch_warnings():
            warnings.simplefilter("always", NormstatWarning)
            warnings.showwarning = _show_warning
            return self._invoke(ctx)

    def _in_flags(self, message: str) -> str:
        """The library names parameters (``chunk_size: ...``); on the command line, the
        option that sets it (``--chunk-size: ...``)."""
        name, sep, rest = message.partition(": ")
        if not sep or not name.isidentifier():
            return message
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, click.Option) and param.name == name:
                    return f"{max(param.opts, key=len)}: {rest}"
        return message

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NormstatError as exc:
            failure = _UsageFailure if exc.exit_code == _UsageFailure.exit_code else _Failure
            from normstat.storage import redacted

            raise failure(redacted(self._in_flags(str(exc)))) from None
        except (KeyboardInterrupt, interrupts.Interrupted):
            # the flag is the truth; a KeyboardInterrupt without our handler counts as SIGINT
            signum = interrupts.signum() or signal.SIGINT
            if not (interrupts.committed and interrupts.announced):  # else "wrote OUT" said it
                click.echo(interrupts.report(signum), err=True)
            ctx.exit(interrupts.exit_code(signum))
        except BrokenPipeError:
            # Python's documented recipe: stop writing to the closed pipe, exit quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except (OSError, MemoryError) as exc:
            if os.environ.get("NORMSTAT_DEBUG"):
                raise
            raise _Failure(f"{type(exc).__name__}: {_failures.os_reason(exc)}") from None


class _ClickProgress:
    """click's progress bar on stderr: percent, rows done of the total, throughput and ETA.

    On a terminal the bar redraws in place; when forced (``--progress``) onto a file or pipe,
    click prints only the label, so a one-line summary is printed when the run ends.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.started = 0.0
        self.row_bytes = 0
        self.exact = True  # the total (False: an estimate until every shard is opened)

    def start(self, total: int | None, row_bytes: int = 0) -> None:
        self.started = time.monotonic()
        self.row_bytes = row_bytes
        self.done = 0
        if total is None:  # CSV or a stream: no total to draw a bar against; count rows instead
            return
        self.bar = click.progressbar(  # type: ignore[call-overload]
            length=total,
            label=click.style(self.label, bold=True),
            file=sys.stderr,
            show_eta=True,
            show_percent=True,
            item_show_func=self._info,
            width=24,
            bar_template="%(label)s  " + click.style("%(bar)s", fg="green") + "  %(info)s",
            **_bar_chars(),
        )
        self.bar.__enter__()

    def _info(self, _item: object) -> str:
        done, total = self.bar.pos, self.bar.length
        about = "" if self.exact else "~"  # shards not opened yet counted as the first
        info = f"{_count(done)}/{about}{_count(total)} rows"
        if self.row_bytes:
            info += f"  {_count(done * self.row_bytes)}B/{about}{_count(total * self.row_bytes)}B"
        return f"{info}  {self._rate(done)}"

    def total_changed(self, total: int | None, exact: bool) -> None:
        """A better total: shards are opened as the pass reaches them, each counted as many
        rows as the first until then."""
        self.exact = exact
        if self.bar is not None and total is not None:
            self.bar.length = total
            self.bar.finished = self.bar.pos >= total
            self.bar.render_progress()

    def _rate(self, done: int) -> str:
        elapsed = time.monotonic() - self.started
        if not (elapsed > 0 and done):
            return ""
        rate = f"{_count(done / elapsed)} rows/s"
        if self.row_bytes:
            rate += f", {_count(done * self.row_bytes / elapsed)}B/s"
        return rate

    def advance(self, n: int) -> None:
        if self.bar is None:
            self.done += n
            if sys.stderr.isatty():
                line = f"{self.label}  {_count(self.done)} rows  {self._rate(self.done)}"
                click.echo(f"\r{line}", err=True, nl=False)
            return
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is None:
            if self.done and sys.stderr.isatty():
                click.echo("", err=True)
            elif self.done:
                self._summary(self.done)
            return
        self.bar.__exit__(None, None, None)
        if not sys.stderr.isatty() and self.bar.pos >= self.bar.length:  # not after a failure
            self._summary(self.bar.pos)

    def _summary(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        click.echo(
            f"{self.label}: {_count(done)} rows in {elapsed:.1f} s ({self._rate(done)})".replace(
                " ()", ""
            ),
            err=True,
        )


def _bar_chars() -> dict[str, str]:
    if (getattr(sys.stderr, "encoding", None) or "").lower().replace("-", "") == "utf8":
        return {"fill_char": "\u2588", "empty_char": "\u2591"}
    return {"fill_char": "#", "empty_char": "-"}


def _count(n: float) -> str:
    """1234 -> 1.2k, 5600000 -> 5.6M: short enough for a progress line."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _progress(enabled: bool | None, quiet: bool, label: str) -> _ClickProgress | None:
    if quiet or enabled is False:
        return None
    if enabled is None and not sys.stderr.isatty():
        return None
    return _ClickProgress(label)


def _run_with_progress(
    hook: _ClickProgress | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    try:
        return fn(*args, progress=hook, **kwargs)
    finally:
        if hook is not None:
            hook.close()


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, allow_nan=False))


def _write_stats(stats: Stats, output: str | None, quiet: bool, saved: bool = False) -> None:
    """Print to stdout, or save to ``output`` (unless the command saved it already); report."""
    if output is None or output == "-":
        if sys.stdout is None:
            raise _Failure("<stdout>: cannot write the output (stdout is closed)")
        click.echo(artifact.dumps(stats), nl=False)
        return
    if not saved:
        artifact.save(stats, output)
    if not quiet:
        n = int(stats.moments.count.size)
        _wrote(
            f"wrote {output}: {n} features, feature shape {list(stats.feature_shape)}, "
            f"{stats.source.get('shape', ['?'])[0]} samples"
        )


def _quoted(name: str) -> str:
    """A column name as --columns takes it: CSV-quoted when it holds a comma or a quote."""
    return '"' + name.replace('"', '""') + '"' if any(c in name for c in ',"') else name


def _report_columns(stats: Stats, limit: int = 20) -> None:
    """Which columns became features and which were left out, and why (tables only)."""
    if stats.features is None or stats.source.get("kind") != "table":
        return
    names = [_quoted(n) for n in stats.features]
    shown = ", ".join(names[:limit]) + (
        f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    )
    line = f"features: {len(names)} ({shown})"
    if stats.feature_groups is not None:
        line = f"features: {len(names)}, {report.feature_groups_line(stats)}"
    left = stats.source.get("left_out") or []
    if left:
        parts = [f"{_quoted(c['name'])} ({c['reason']})" for c in left[:limit]]
        more = f", ... ({len(left) - limit} more)" if len(left) > limit else ""
        line += f"; left out: {', '.join(parts)}{more}"
    click.echo(line, err=True)
    for p in stats.source.get("promoted") or []:
        click.echo(
            f"column {p['name']!r} is {' / '.join(p['types'])} across shards: read as {p['to']}",
            err=True,
        )


def _wrote(line: str) -> None:
    """Report a committed output; a signal after this line adds no second line."""
    with interrupts.deferred():
        click.echo(line, err=True)
        interrupts.announced.append(line)


# Options shared by the commands that read data.
_nan_option = click.option(
    "--nan",
    type=click.Choice(NAN_POLICIES),
    default="skip",
    show_default=True,
    help="skip: ignore NaN per feature; error: fail naming feature and row.",
)
"""Shared by fit and drift, which both fit data."""


def _reading_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed(
        [
            click.option(
                "--dataset",
                metavar="/GROUP/NAME",
                help="HDF5 dataset to read (or write SOURCE as file.h5:/group/name).",
            ),
            click.option(
                "--input-format",
                type=click.Choice(["npy", "arrow", "csv"]),
                help="Format of stdin when SOURCE is '-' (arrow: an Arrow IPC stream).",
            ),
            click.option(
                "--columns",
                metavar="A,B,C",
                help="Tables: the feature columns, comma-separated; quote a name that holds a "
                "comma as in CSV ('\"weight, kg\",price'). Default: every integer, float and "
                "decimal column, but Hugging Face ClassLabel and pandas index columns.",
            ),
            click.option(
                "--chunk-size",
                metavar="ROWS|BYTES",
                help="Samples per chunk (65536) or a byte budget (64MB, 1GiB). "
                "Default: about 32 MiB of input, aligned to HDF5 chunks.",
            ),
            click.option(
                "--progress/--no-progress",
                default=None,
                help="Progress bar on stderr (default: only when stderr is a terminal).",
            ),
            click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
        ]
    ):
        fn = deco(fn)
    return fn


_external_option = click.option(
    "--allow-external",
    is_flag=True,
    help="HDF5: let a dataset read files outside its file's directory (external storage, "
    "external links, virtual datasets); refused by default.",
)
"""Shared by fit and apply."""


def _csv_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed(
        [
            click.option(
                "--column-types",
                metavar="NAME:TYPE,...",
                help="CSV: fix column types instead of inferring them, e.g. "
                "price:float64,code:string (a string column is never a feature).",
            ),
            click.option(
                "--delimiter",
                metavar="CHAR",
                help="CSV: the field separator (default ','; tab: 'tab').",
            ),
            click.option(
                "--no-header",
                is_flag=True,
                help="CSV: the first row is data; columns are named c0, c1, ...",
            ),
            click.option(
                "--null-values",
                metavar="A,B",
                help="CSV: the spellings of a missing value (default: empty, NA, N/A, NaN, "
                "nan, null, NULL and a few more).",
            ),
        ]
    ):
        fn = deco(fn)
    return fn


_allow_overlap_option = click.option(
    "--allow-overlap",
    is_flag=True,
    help="Read the same file twice, or merge statistics of the same data twice (its rows "
    "count twice).",
)


def _image_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How image sources (files, folders, tar shards) are decoded; see docs/images.md."""
    skip = [
        click.option(
            "--skip-bad",
            is_flag=True,
            help="Images: skip files that do not decode (recorded in the artifact; apply "
            "finds them first, by one more decoding pass) instead of failing.",
        )
    ]
    for deco in reversed(
        [
            click.option(
                "--mode",
                metavar="MODE",
                help="Images: Pillow mode to convert to before any resize (default RGB; L for "
                "grey; I;16 keeps 16-bit PNGs).",
            ),
            click.option(
                "--resize",
                type=click.IntRange(min=1),
                metavar="SIZE",
                help="Images: shorter side to SIZE, bilinear, as torchvision's Resize(SIZE).",
            ),
            click.option(
                "--center-crop",
                nargs=2,
                type=click.IntRange(min=1),
                default=None,
                metavar="H W",
                help="Images: the central H x W, as torchvision's CenterCrop((H, W)).",
            ),
            *skip,
        ]
    ):
        fn = deco(fn)
    return fn


def _read_options(
    mode: str | None, resize: int | None, center_crop: tuple[int, int] | None, skip_bad: bool
) -> dict[str, Any]:
    return {"mode": mode, "resize": resize, "center_crop": center_crop, "skip_bad": skip_bad}


# Options of the commands that can run on a Dask cluster.
def _engine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed(
        [
            click.option(
                "--engine",
                type=click.Choice(ENGINES),
                default="local",
                show_default=True,
                help="local: threads in this process; dask: Dask tasks on a cluster "
                "(pip install 'normstat[dask]').",
            ),
            click.option(
                "--scheduler",
                metavar="ADDRESS",
                help="Dask scheduler to use, e.g. tcp://10.0.0.5:8786 (default: "
                "$DASK_SCHEDULER_ADDRESS, else a local cluster started and closed here).",
            ),
            click.option(
                "--task-size",
                metavar="ROWS|BYTES",
                help="Input per Dask task: rows or bytes (default 64MiB, a whole number of "
                "chunks, for tables whole row groups; 100 GB makes about 1,500 tasks).",
            ),
        ]
    ):
        fn = deco(fn)
    return fn


def _storage_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--storage-option KEY=VALUE`` (repeatable): held for the whole command, as the library's
    ``storage_options=`` is for a call (endpoint and credentials of s3:// / gs:// URIs)."""
    import functools

    @functools.wraps(fn)
    def run(*args: Any, storage_option: tuple[str, ...] = (), **kwargs: Any) -> Any:
        from normstat import storage

        with storage.using(dict(storage.parse_option(o) for o in storage_option)):
            return fn(*args, **kwargs)

    return click.option(
        "--storage-option",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="For s3:// and gs:// URIs: endpoint_url, region, key, secret, token, anon "
        "(default: the environment, AWS_ENDPOINT_URL, AWS_PROFILE, ...). Never printed.",
    )(run)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="normstat")
def main() -> None:
    """Normalization statistics of datasets too large for memory, in one streaming pass.

    \b
      normstat fit data.h5:/images -o stats.json     # per-channel mean/var
      normstat apply stats.json test.h5 -o test-std.h5
      normstat show stats.json
    """


@main.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "-o",
    "--output",
    metavar="STATS",
    help="Write the statistics here (.json, or .npz); default: JSON to stdout.",
)
@click.option("--force", is_flag=True, help="Replace STATS if it exists (never an input).")
@click.option(
    "--axis",
    "axis",
    multiple=True,
    metavar="AXIS",
    help="Axis that keeps its own statistics (repeatable; 'none' reduces all). "
    "Default -1: the last axis, e.g. channels of NHWC images.",
)
@click.option(
    "--ddof",
    type=int,
    default=0,
    show_default=True,
    help="Delta degrees of freedom: var = m2 / (count - ddof).",
)
@_nan_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Compute threads and image decoding processes (default: all cores); with --engine "
    "dask and no --scheduler, worker processes of the local cluster.",
)
@click.option(
    "--checkpoint",
    metavar="STATE.npz",
    help="Save the merged state and position here, atomically, while fitting; removed on success.",
)
@click.option(
    "--checkpoint-every",
    type=float,
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to save the checkpoint.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from --checkpoint if it exists (refused if the data changed).",
)
@click.option(
    "--rescale",
    default="1",
    metavar="S",
    help="Statistics of x * S (a number or a fraction such as 1/255, as Keras Rescaling or "
    "torchvision's ToTensor); recorded, and apply rescales before it standardizes.",
)
@_image_options
@click.option(
    "--quantiles",
    metavar="Q,Q,...|robust",
    help="Also the quantiles at these levels, e.g. 0.01,0.5,0.99 ('robust': 0.25,0.5,0.75): "
    "numpy's linear quantiles, exact for integers of 16 bits or fewer, else within 0.8%.",
)
@click.option(
    "--histogram",
    is_flag=True,
    help="Keep the distribution summary in STATS (for drift/diff --metric); --quantiles "
    "keeps it too.",
)
@click.option(
    "--exact",
    is_flag=True,
    help="Exact --quantiles for any data: reads the data again (usually once) to select them.",
)
@click.option(
    "--by",
    metavar="COL",
    help="Tables: also keep the statistics of each distinct value of COL (an episode, a "
    "speaker), beside the pooled ones, in the same pass.",
)
@click.option(
    "--weights",
    metavar="COL",
    help="Tables: weight each row by COL (non-negative; var = sum w (x - mean)^2 / sum w, as "
    "scikit-learn's sample_weight).",
)
@_reading_options
@_external_option
@click.option(
    "--exclude",
    metavar="A,B",
    help="Tables: columns that are never features (comma-separated, quoted as --columns).",
)
@_csv_options
@_allow_overlap_option
@_engine_options
@_storage_options
def fit(
    sources: tuple[str, ...],
    output: str | None,
    force: bool,
    axis: tuple[str, ...],
    ddof: int,
    nan: str,
    workers: int | None,
    checkpoint: str | None,
    checkpoint_every: float,
    resume: bool,
    rescale: str,
    mode: str | None,
    resize: int | None,
    center_crop: tuple[int, int] | None,
    skip_bad: bool,
    dataset: str | None,
    input_format: str | None,
    columns: str | None,
    chunk_size: str | None,
    progress: bool | None,
    quiet: bool,
    allow_external: bool,
    exclude: str | None,
    column_types: str | None,
    delimiter: str | None,
    no_header: bool,
    null_values: str | None,
    allow_overlap: bool,
    engine: str,
    scheduler: str | None,
    task_size: str | None,
    quantiles: str | None,
    histogram: bool,
    exact: bool,
    by: str | None,
    weights: str | None,
) -> None:
    """Compute statistics of SOURCE (several files are shards of one dataset) in one pass.

    Tables: prints on stderr which columns became features and which were left out, and why.

    Python: normstat.fit(sources, axis=..., ddof=..., nan=...).
    """
    hook = _progress(progress, quiet, "fit")
    stats = _run_with_progress(
        hook,
        api.fit,
        list(sources),
        dataset=dataset,
        axis=_layout.parse_axis(axis),
        ddof=ddof,
        nan=nan,
        chunk_size=chunk_size,
        workers=workers,
        input_format=input_format,
        columns=columns,
        exclude=exclude,
        column_types=column_types,
        delimiter=delimiter,
        header=not no_header,
        null_values=null_values,
        allow_overlap=allow_overlap,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        engine=engine,
        scheduler=scheduler,
        task_size=task_size,
        allow_external=allow_external,
        rescale=rescale,
        options=_read_options(mode, resize, center_crop, skip_bad),
        output=None if output == "-" else output,
        force=force,
        quantiles=quantiles,
        histogram=histogram,
        exact=exact,
        by=by,
        weights=weights,
    )
    if not quiet:
        _report_columns(stats)
        for line in report.keyed_lines(stats):
            click.echo(line, err=True)
    _write_stats(stats, output, quiet, saved=True)


@main.command("apply")
@click.argument("stats", metavar="STATS")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="OUT",
    help="Output file (.h5, .npy, .zarr, and for tables .parquet, .arrow, .feather, .csv; "
    "default: the input's format), or '-' for stdout (NPY for arrays, an Arrow IPC stream for "
    "tables). With --engine dask and several SOURCEs, a name without suffix is a directory of "
    "parts, one per SOURCE. OUT may be an s3:// or gs:// URI (any file format and Zarr; with "
    "--engine dask: .zarr, or files on s3://): it appears only when complete.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=None,
    help="zscore (default): (x - mean) / std; minmax: to --range; center: x - mean; robust: "
    "(x - median) / IQR as scikit-learn's RobustScaler; quantile: --quantile-range to [-1, 1] "
    "(robust and quantile need fit --quantiles). With --inverse on an output of apply (HDF5, "
    "Zarr): the method it records.",
)
@click.option(
    "--range",
    "feature_range",
    nargs=2,
    type=float,
    default=(0.0, 1.0),
    show_default=True,
    metavar="LOW HIGH",
    help="Target range of --method minmax.",
)
@click.option(
    "--quantile-range",
    nargs=2,
    type=float,
    default=None,
    metavar="LO HI",
    help="Quantile levels of --method quantile (default 0.01 0.99: to -1, 1) and of --method "
    "robust (default 0.25 0.75: the IQR).",
)
@click.option(
    "--clip", is_flag=True, help="Bound the output to the target range (minmax, quantile)."
)
@click.option("--inverse", is_flag=True, help="Undo the transform (restore original units).")
@click.option("--dtype", default="float32", show_default=True, help="Output dtype (a float).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never an input).")
@click.option(
    "--output-format",
    type=click.Choice(OUTPUT_FORMATS),
    default=None,
    help="Format of OUT, whatever its suffix (default: by OUT's suffix, else the input's).",
)
@click.option(
    "--constant-tol",
    type=click.FloatRange(min=0),
    metavar="TOL",
    help="zscore: only centre features with std <= TOL * max(1, |mean|) (default: "
    "scikit-learn's rule, which grows with the row count; see docs/numerics.md).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Leave features without statistics (count 0) unchanged instead of refusing.",
)
@click.option(
    "--clip-to-dtype",
    is_flag=True,
    help="Clip values beyond --dtype's range (e.g. float16's 65504) instead of failing.",
)
@click.option(
    "--by",
    metavar="COL",
    help="Tables: standardize each row with the statistics of its group, its value of COL "
    "(STATS fitted with --by), as per-speaker CMVN.",
)
@click.option(
    "--by-fallback",
    type=click.Choice(("error", "pooled")),
    default=None,
    help="With --by, a group not seen when fitting: an error (default), or the pooled "
    "statistics (said on stderr).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Image decoding processes; local engine: threads transforming ahead of the writer "
    "(default 1); with --engine dask and no --scheduler: worker processes of the local "
    "cluster (default: all cores).",
)
@_image_options
@_reading_options
@_external_option
@_csv_options
@_allow_overlap_option
@_engine_options
@_storage_options
def apply_cmd(
    stats: str,
    sources: tuple[str, ...],
    output: str,
    method: str | None,
    feature_range: tuple[float, float],
    quantile_range: tuple[float, float] | None,
    clip: bool,
    inverse: bool,
    dtype: str,
    force: bool,
    output_format: str | None,
    constant_tol: float | None,
    allow_empty: bool,
    clip_to_dtype: bool,
    by: str | None,
    by_fallback: str | None,
    workers: int | None,
    mode: str | None,
    resize: int | None,
    center_crop: tuple[int, int] | None,
    skip_bad: bool,
    dataset: str | None,
    input_format: str | None,
    columns: str | None,
    chunk_size: str | None,
    progress: bool | None,
    quiet: bool,
    allow_external: bool,
    column_types: str | None,
    delimiter: str | None,
    no_header: bool,
    null_values: str | None,
    allow_overlap: bool,
    engine: str,
    scheduler: str | None,
    task_size: str | None,
) -> None:
    """Normalise SOURCE with the statistics in STATS and write OUT.

    Features with (near-)zero std are only centred. Python: normstat.apply(stats, sources, out).
    """
    hook = _progress(progress, quiet, "apply")
    _run_with_progress(
        hook,
        api.apply,
        stats,
        list(sources),
        output,
        dataset=dataset,
        method=method,
        feature_range=feature_range,
        quantile_range=quantile_range,
        clip=clip,
        inverse=inverse,
        dtype=dtype,
        chunk_size=chunk_size,
        force=force,
        output_format=output_format,
        workers=workers,
        input_format=input_format,
        columns=columns,
        column_types=column_types,
        delimiter=delimiter,
        header=not no_header,
        null_values=null_values,
        allow_overlap=allow_overlap,
        engine=engine,
        scheduler=scheduler,
        task_size=task_size,
        allow_external=allow_external,
        options=_read_options(mode, resize, center_crop, skip_bad),
        constant_tol=constant_tol,
        allow_empty=allow_empty,
        clip_to_dtype=clip_to_dtype,
        by=by,
        by_fallback=by_fallback,
    )
    if not quiet and output != "-":
        _wrote(f"wrote {output}")


@main.command()
@click.argument("stats", metavar="STATS")
@click.option("--json", "as_json", is_flag=True, help="The artifact as JSON (exact values).")
@click.option("--all", "show_all", is_flag=True, help="List every feature, however many.")
@click.option(
    "--by",
    "by",
    is_flag=True,
    help="Statistics fitted with --by: the groups that move the pooled std most (every group "
    "with --all).",
)
@_storage_options
def show(stats: str, as_json: bool, show_all: bool, by: bool) -> None:
    """Show the statistics in STATS as a table. Python: normstat.load(path)."""
    if as_json:
        click.echo(artifact.dumps(artifact.load(stats)), nl=False)
    elif by:
        click.echo(report.groups_table(artifact.load(stats), None if show_all else 20))
    else:  # a block of features at a time: a wide artifact is not held whole (report.py)
        click.echo(report.show_file(stats, None if show_all else 20))


@main.command()
@click.argument("parts", nargs=-1, required=True, metavar="STATS...")
@click.option(
    "-o", "--output", metavar="OUT", help="Merged statistics (.json/.npz); default: JSON to stdout."
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never an input).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@_allow_overlap_option
@_storage_options
def merge(
    parts: tuple[str, ...], output: str | None, force: bool, quiet: bool, allow_overlap: bool
) -> None:
    """Merge statistics of disjoint parts exactly; parts fitted from the same data (by the
    fingerprints in the artifacts) are refused. Python: normstat.merge(paths)."""
    if output not in (None, "-"):
        _atomic.check_writable(output, force=force, inputs=parts)
    _write_stats(api.merge(list(parts), allow_overlap=allow_overlap), output, quiet)


@main.command()
@click.argument("stats", metavar="STATS")
@click.option(
    "--to",
    "to",
    type=click.Choice(EXPORT_TARGETS),
    required=True,
    help="keras: Normalization(axis, mean, variance); torch: Normalize(mean, std); "
    "sklearn: StandardScaler attributes; sklearn-robust: RobustScaler center_, scale_ "
    "(needs fit --quantiles robust); lerobot: meta/stats.json per column group; openpi: "
    "norm_stats.json (q01 / q99 need fit --quantiles 0.01,0.99).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Export features without statistics (count 0) as mean 0, scale 1 instead of refusing.",
)
@_storage_options
def export(stats: str, to: str, allow_empty: bool) -> None:
    """Print the statistics in the form a framework takes, as JSON (one line per array).

    Python: normstat.export(stats, to).
    """
    _write_compact_json(api.export_arrays(stats, to, allow_empty=allow_empty))


def _write_compact_json(obj: dict[str, Any]) -> None:
    """One key per line and each value (a whole array) on that line: readable, and what
    ``json.loads`` reads back. Arrays of finite numbers are written a block at a time
    (``numtext.dump_array``): a wide export holds no Python list nor the whole text."""
    import numpy as np

    from normstat.numtext import dump_array

    out = sys.stdout
    out.write("{\n")
    for i, (k, v) in enumerate(obj.items()):
        out.write(f"{',' + chr(10) if i else ''}  {json.dumps(k)}: ")
        if isinstance(v, np.ndarray) and v.dtype.kind in "iuf" and np.isfinite(v).all():
            dump_array(v, out)
        else:
            out.write(json.dumps(v.tolist() if isinstance(v, np.ndarray) else v, allow_nan=False))
    out.write("\n}\n")


def _drift_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed(
        [
            click.option(
                "--threshold",
                type=click.FloatRange(min=0),
                metavar="X",
                help="Exit 1 when any feature fails: |mean_shift| = |mean_b - mean_a| / std_a "
                "(or its --metric) above X, a missing rate moved by more than "
                "--missing-threshold, or a change (became all-missing, turned constant, stopped "
                "being constant, constant value changed). See docs/drift.md.",
            ),
            click.option(
                "--missing-threshold",
                type=click.FloatRange(min=0, max=1),
                default=0.05,
                show_default=True,
                metavar="P",
                help="With --threshold: fail when a missing-value rate moves by more than P "
                "(0.05: 5 percentage points).",
            ),
            click.option(
                "--metric",
                type=click.Choice(METRICS),
                help="Also compare the distributions (both need fit --histogram or "
                "--quantiles): psi, ks, wasserstein, js or hellinger; it orders the features "
                "and --threshold tests it. See docs/quantiles.md.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Every feature as JSON."),
            click.option("--all", "show_all", is_flag=True, help="List every feature."),
        ]
    ):
        fn = deco(fn)
    return fn


def _report_drift(
    result: Drift,
    threshold: float | None,
    missing_threshold: float,
    as_json: bool,
    show_all: bool,
) -> None:
    failing = [] if threshold is None else result.exceeding(threshold, missing_threshold).tolist()
    if as_json:
        _echo_json(
            {
                "threshold": threshold,
                "missing_threshold": missing_threshold,
                "metric": result.metric,
                "exceeding": [result.names[i] for i in failing] if threshold is not None else None,
                "features": result.records(),
            }
        )
    else:
        click.echo(
            report.drift_table(result, None if show_all else 20, threshold, missing_threshold)
        )
    if failing:
        assert threshold is not None
        shown = "; ".join(
            f"{result.names[i]} ({', '.join(result.reasons(i, threshold, missing_threshold))})"
            for i in failing[:5]
        ) + ("; ..." if len(failing) > 5 else "")
        click.echo(
            f"drift: {len(failing)} feature{'s' if len(failing) > 1 else ''} failing: {shown}",
            err=True,
        )
        raise click.exceptions.Exit(1)


@main.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@_drift_options
@_storage_options
def diff(
    a: str,
    b: str,
    threshold: float | None,
    missing_threshold: float,
    metric: str | None,
    as_json: bool,
    show_all: bool,
) -> None:
    """Compare statistics B with A (serving vs training data), worst feature first.

    Per feature: mean_shift = (mean_b - mean_a) / std_a (B's mean after A's z-score), std_ratio =
    std_b / std_a, the missing-value rates, the change of min and max, and whether the feature
    became all-missing, turned constant or stopped being constant. Python: normstat.diff(a, b).
    """
    _report_drift(api.diff(a, b, metric=metric), threshold, missing_threshold, as_json, show_all)


@main.command()
@click.argument("stats", metavar="STATS")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@_drift_options
@_nan_option
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Compute threads (default: all)."
)
@_reading_options
@_csv_options
@_storage_options
def drift(
    stats: str,
    sources: tuple[str, ...],
    threshold: float | None,
    missing_threshold: float,
    metric: str | None,
    as_json: bool,
    show_all: bool,
    nan: str,
    workers: int | None,
    dataset: str | None,
    input_format: str | None,
    columns: str | None,
    chunk_size: str | None,
    progress: bool | None,
    quiet: bool,
    column_types: str | None,
    delimiter: str | None,
    no_header: bool,
    null_values: str | None,
) -> None:
    """Fit SOURCE and compare it with STATS (as diff does), worst feature first.

    SOURCE is fitted with the axis and ddof recorded in STATS.

    Python: normstat.drift(stats, sources).
    """
    hook = _progress(progress, quiet, "drift")
    result = _run_with_progress(
        hook,
        api.drift,
        stats,
        list(sources),
        dataset=dataset,
        nan=nan,
        chunk_size=chunk_size,
        workers=workers,
        input_format=input_format,
        columns=columns,
        column_types=column_types,
        delimiter=delimiter,
        header=not no_header,
        null_values=null_values,
        metric=metric,
    )
    _report_drift(result, threshold, missing_threshold, as_json, show_all)


@main.command("plot")
@click.argument("stats", metavar="STATS")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="IMAGE",
    help="Image to write (.png, .svg or .pdf).",
)
@click.option("--title", help="Title instead of the description of the data.")
@click.option("--force", is_flag=True, help="Replace IMAGE if it exists.")
def plot_cmd(stats: str, output: str, title: str | None, force: bool) -> None:
    """Draw STATS: mean/std heatmaps per position, bars per channel, or ranges per feature.

    Needs the plot extra (pip install 'normstat[plot]'). Python: normstat.plot.plot(stats, out).
    """
    from normstat import plot

    _atomic.check_writable(output, force=force, inputs=(stats,))
    plot.plot(stats, output, title=title)
    _wrote(f"wrote {output}")
