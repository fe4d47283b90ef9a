"""Time normstat against the floors and the peers, in one run, each method in its own process.

For each dataset of ``make_data.py`` and each method: the median wall time of several repeats
(after one untimed warm-up run, so the page cache is warm), the ratio to the *read + one float64
sum pass* floor measured in the same run, the largest relative error of the variance over the
features against an exact reference, and the peak RSS of the method's process (``os.wait4``).

    python benchmarks/make_data.py --gb 1.5 --out /tmp/nsbench
    python benchmarks/run.py --data /tmp/nsbench
    python benchmarks/run.py --small          # generates tiny data in a temp dir; CI runs this

Peers that are not installed are skipped with a note (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_data  # noqa: E402
import methods  # noqa: E402

FLOOR = "floor: read + f64 sum"


@dataclass
class Result:
    dataset: str
    method: str
    times: list[float] = field(default_factory=list)
    rss_mb: float = float("nan")
    rel_err: float | None = None
    note: str = ""
    paired: list[float] = field(default_factory=list)  # CLI: run minus its paired library call
    beyond_imports: list[float] = field(default_factory=list)  # ... minus its import-only run
    fixed: list[float] = field(default_factory=list)  # CLI on a tiny file minus imports

    @property
    def median(self) -> float:
        return float(np.median(self.times)) if self.times else float("nan")


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one child process, measured by ``spawn.py``."""
    with tempfile.TemporaryFile("w+") as errf, tempfile.TemporaryDirectory() as tmp:
        rep = os.path.join(tmp, "rusage.json")
        spawner = [sys.executable, "-S", os.path.join(HERE, "spawn.py"), rep]
        done = subprocess.run(
            spawner + argv, stdout=subprocess.PIPE, stderr=errf, text=True, env=env
        )
        with open(rep) as f:
            usage = json.load(f)
        if done.returncode != 0 or usage["exit"] != 0:
            errf.seek(0)
            last = (errf.read().strip().splitlines() or ["?"])[-1]
            raise RuntimeError(f"{os.path.basename(argv[1])} {argv[2]} failed: {last}")
    return usage["wall"], usage["maxrss_kb"] / 1024, done.stdout


def run_worker(dataset: str, method: str, path: str, repeats: int, settle: float = 0.0) -> Result:
    t0 = time.perf_counter()
    res = _run_worker(dataset, method, path, repeats, settle)
    if os.environ.get("NSBENCH_VERBOSE"):
        print(f"{dataset} {method}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return res


def _run_worker(dataset: str, method: str, path: str, repeats: int, settle: float) -> Result:
    worker = os.path.join(HERE, "methods.py")
    argv = [sys.executable, worker, method, dataset, path, str(repeats), str(settle)]
    res = Result(dataset, method)
    try:
        _, res.rss_mb, out = run_measured(argv)
    except RuntimeError as exc:
        res.note = str(exc)
        return res
    report = json.loads(out.strip().splitlines()[-1])
    if "skip" in report:
        res.note = report["skip"]
        return res
    res.times = report["times"]
    res.note = report.get("note", "")
    if "var" in report:
        res._var = np.asarray(report["var"], np.float64)  # type: ignore[attr-defined]
    return res


IMPORTS = {"table": "pyarrow.parquet", "floats": "h5py", "images": "h5py"}
IMPORT_FLOOR = "floor: python + imports"
TINY_GB = 64e-6
"""Size of the files the CLI's fixed cost is measured on: 250 float or table rows, 20 images."""
CLI = "normstat fit (CLI)"


def run_cli(dataset: str, path: str, repeats: int, scratch: str, tiny: str) -> list[Result]:
    """``normstat fit`` end to end, timed from outside (process start to exit), and the part of
    it no code of ours can remove: a fresh interpreter importing numpy, click and the format's
    reader library (with ``OPENBLAS_NUM_THREADS=1``, as the CLI sets it).

    Each repeat is four runs back to back: a CLI run, a library call by a warm process that
    stays up for the series, an import-only run, and the CLI on ``tiny`` (the same format and
    layout, a few rows); the order rotates so that a drift in the machine's speed does not
    favour one of them. The CLI overhead is the median of the per-repeat differences *CLI -
    library*; what normstat adds beyond the imports, the median of *CLI - library - imports*;
    and its fixed cost (its own modules, parsing, writing the artifact, exit), *CLI on tiny -
    imports*, which a long fit's noise does not blur. On a shared machine whose speed drifts by
    20% over minutes, a difference of two medians measured minutes apart moved by 0.2 s between
    runs; the paired differences do not.
    """
    cli, imports = Result(dataset, CLI), Result(dataset, IMPORT_FLOOR)
    imports.note = code = f"import numpy, click, {IMPORTS[dataset]}"
    out = os.path.join(scratch, f"cli-{dataset}.json")
    fit = [*normstat_command(), "fit"]
    argv = [*fit, methods.source_spec(dataset, path), "-o", out, "-q", "--force"]  # repeated runs
    tiny_argv = [*fit, methods.source_spec(dataset, tiny), "-o", f"{out}.tiny", "-q", "--force"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    server = [sys.executable, os.path.join(HERE, "methods.py"), "serve", methods.NORMSTAT]
    with subprocess.Popen(
        [*server, dataset, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as lib:
        assert lib.stdin is not None and lib.stdout is not None
        stdin, stdout = lib.stdin, lib.stdout

        def library() -> float:
            stdin.write("go\n")
            stdin.flush()
            return float(stdout.readline())

        if stdout.readline().strip() != "ready":
            cli.note = "the library side of the pairs did not start"
            return [cli, imports]
        steps = {
            "cli": lambda: run_measured(argv),
            "lib": lambda: (library(), float("nan"), ""),
            "imports": lambda: run_measured([sys.executable, "-c", code], env),
            "tiny": lambda: run_measured(tiny_argv),
        }
        for i in range(repeats + 1):
            order = list(steps)[i % 4 :] + list(steps)[: i % 4]
            try:
                got = {name: steps[name]() for name in order}
            except RuntimeError as exc:
                cli.note, cli.times = str(exc).split("failed: ")[-1], []
                return [cli, imports]
            if i:  # the first round warms the page cache
                wall, rss, _ = got["cli"]
                lib_s = got["lib"][0]
                imp, imp_rss, _ = got["imports"]
                cli.times.append(wall)
                imports.times.append(imp)
                cli.rss_mb = float(np.fmax(cli.rss_mb, rss))  # NaN until the first run
                imports.rss_mb = imp_rss
                cli.paired.append(wall - lib_s)
                cli.beyond_imports.append(wall - lib_s - imp)
                cli.fixed.append(got["tiny"][0] - imp)
        stdin.close()
    with open(out) as f:
        art = json.load(f)
    cli._var = np.asarray(art["var"], np.float64).ravel()  # type: ignore[attr-defined]
    return [cli, imports]


def compile_normstat() -> None:
    """Write normstat's bytecode, as ``pip install`` does for an installed copy.

    An editable install run with PYTHONDONTWRITEBYTECODE set (common in containers and CI
    images) otherwise compiles every normstat module at each CLI start: measured 0.03 s a run
    on the example file, a cost no user of an installed copy pays.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("normstat")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(os.path.dirname(spec.origin), quiet=1)


def normstat_command() -> list[str]:
    """The installed ``normstat`` script next to this interpreter, else ``python -m normstat``."""
    exe = shutil.which("normstat", path=os.path.dirname(sys.executable)) or shutil.which("normstat")
    return [exe] if exe else [sys.executable, "-m", "normstat"]


def run_help(repeats: int) -> Result:
    res = Result("-", "normstat --help")
    for _ in range(repeats + 1):
        wall, res.rss_mb, _ = run_measured([*normstat_command(), "--help"])
        res.times.append(wall)
    res.times = res.times[1:]
    return res


def reference(dataset: str, path: str) -> np.ndarray:
    """Exact variances, computed once per data file (cached next to it)."""
    st = os.stat(path)
    cache = f"{path}.refvar-{st.st_size}-{int(st.st_mtime)}.npy"
    if not os.path.exists(cache):
        argv = [sys.executable, os.path.join(HERE, "methods.py"), "reference", dataset, path, "1"]
        _, _, out = run_measured(argv)
        np.save(cache, np.asarray(json.loads(out.strip().splitlines()[-1])["var"]))
    return np.load(cache)


def rel_error(var: np.ndarray, ref: np.ndarray) -> float:
    var = np.asarray(var, np.float64).ravel()
    if var.shape != ref.shape:
        return float("nan")
    return float(np.max(np.abs(var - ref) / np.abs(ref)))


def bench_dataset(
    dataset: str, path: str, repeats: int, scratch: str, only: str | None = None
) -> list[Result]:
    ref = reference(dataset, path)
    wanted = [m for m in methods.for_dataset(dataset) if _picked(m, only)]
    results = [run_worker(dataset, m, path, repeats) for m in wanted]
    if _picked(CLI, only):
        tiny = methods.data_paths(os.path.join(scratch, "tiny"))[dataset]
        if not os.path.exists(tiny):  # the same three datasets, a few rows each
            make_data.make_all(os.path.dirname(tiny), TINY_GB)
        at = min(3, len(results))
        results[at:at] = run_cli(dataset, path, repeats, scratch, tiny)
    for r in results:
        if hasattr(r, "_var"):
            r.rel_err = rel_error(r._var, ref)  # type: ignore[attr-defined]
    return results


def _picked(method: str, only: str | None) -> bool:
    return only is None or method.startswith("floor") or only.lower() in method.lower()


APPLY_FLOORS = {"floats": "floor: h5py copy", "table": "floor: pyarrow read + write"}
STREAM_FLOOR = "floor: pyarrow read + stream"


SETTLE_S = 4.0
"""Idle time before each timed writer run, so that it starts with cold memory (methods.measure)."""


def bench_apply(dataset: str, path: str, repeats: int, settle: float) -> list[Result]:
    """``apply`` float32 HDF5 -> HDF5 against a plain h5py copy (read + write), and also against
    that copy made durable (``fsync``, which normstat does before an output takes its name:
    the ratio to it is in the apply row's note); Parquet -> Parquet against pyarrow's own
    streaming read + write of the same file."""
    out = []
    for m in (APPLY_FLOORS[dataset], "normstat.apply"):
        r = run_worker(dataset, m, path, repeats, settle)
        r.dataset = f"apply {dataset}"
        out.append(r)
    if dataset == "floats":  # the copy as durable as normstat's output: the same, then fsync
        durable = run_worker(dataset, methods.DURABLE_COPY, path, repeats, settle)
        durable.dataset = f"apply {dataset}"
        ours = out[-1]
        if durable.times and ours.times:
            ours.note = f"{ours.median / durable.median:.2f}x the durable copy (h5py copy + fsync)"
        out.append(durable)
    if dataset == "table":  # Parquet -> Arrow IPC stream on stdout (-o -)
        for m in (STREAM_FLOOR, "normstat.apply -> stream"):
            r = run_worker(dataset, m, path, repeats, settle)
            r.dataset = "apply table -> stream"
            out.append(r)
    return out


def fmt_row(r: Result, floor: float) -> str:
    med = r.median
    if r.times:
        ratio = f"{med / floor:.2f}x" if floor == floor else "-"
        err = "-" if r.rel_err is None else f"{r.rel_err:.1e}"
        rss = f"{r.rss_mb:.0f}"
        cells = [r.dataset, r.method, f"{med:.3f}", ratio, err, rss, r.note]
    else:
        cells = [r.dataset, r.method, "-", "-", "-", "-", r.note or "skipped"]
    return "| " + " | ".join(cells) + " |"


def print_table(results: list[Result]) -> None:
    print("| data | method | median s | / read+sum | var rel err | peak RSS MB | note |")
    print("|---|---|---|---|---|---|---|")
    floors: dict[str, float] = {}
    for r in results:
        if (
            r.method == FLOOR or r.method in APPLY_FLOORS.values() or r.method == STREAM_FLOOR
        ) and r.times:
            floors[r.dataset] = r.median
    for r in results:
        print(fmt_row(r, floors.get(r.dataset, float("nan"))))


def overheads(results: list[Result]) -> None:
    by = {(r.dataset, r.method): r for r in results}
    for ds in ("floats", "images", "table"):
        cli, imports = by.get((ds, CLI)), by.get((ds, IMPORT_FLOOR))
        if cli and cli.paired:
            line = (
                f"CLI overhead {ds}: {float(np.median(cli.paired)):+.3f} s (median of "
                f"{len(cli.paired)} paired differences, CLI run - library call next to it; "
                f"range {min(cli.paired):+.3f}..{max(cli.paired):+.3f})"
            )
            if imports and imports.times:
                line += (
                    f"; python + imports alone: {imports.median:.3f} s; beyond the imports: "
                    f"{float(np.median(cli.beyond_imports)):+.3f} s; fixed cost on a tiny file "
                    f"beyond the imports: {float(np.median(cli.fixed)):+.3f} s"
                )
            print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/nsbench", help="directory written by make_data.py")
    p.add_argument("--small", action="store_true", help="generate tiny data in a temp dir (CI)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, small 2)")
    p.add_argument("--only", default=None, help="comma-separated datasets: floats,images,table")
    p.add_argument("--methods", default=None, help="only methods containing this (floors kept)")
    args = p.parse_args(argv)
    repeats = args.repeats or (2 if args.small else 5)
    compile_normstat()
    with tempfile.TemporaryDirectory(prefix="nsbench-") as scratch:
        data = os.path.join(scratch, "data") if args.small else args.data
        if args.small:
            make_data.make_all(data, make_data.SMALL_GB)
        paths = methods.data_paths(data)
        wanted = args.only.split(",") if args.only else list(paths)
        results: list[Result] = []
        for ds in wanted:
            if not os.path.exists(paths[ds]):
                print(f"missing {paths[ds]}: run make_data.py first", file=sys.stderr)
                return 2
            results += bench_dataset(ds, paths[ds], repeats, scratch, args.methods)
        settle = 0.0 if args.small else SETTLE_S  # small outputs: nothing to hand back
        for ds in ("floats", "table"):
            if ds in wanted and _picked("normstat.apply", args.methods):
                results += bench_apply(ds, paths[ds], repeats, settle)
        results.append(run_help(repeats))
    print_table(results)
    overheads(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
