"""`import normstat` stays light: plotting and framework libraries load only when called."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("matplotlib", "sklearn", "torch", "keras", "tensorflow", "click", "h5py", "pyarrow")


def test_import_normstat_loads_no_optional_library():
    code = (
        "import sys, normstat, normstat.frameworks, normstat.plot, normstat.core.drift\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_fit_does_not_import_the_other_use_cases():
    """Every import is start-up time of the CLI: ``fit`` needs neither apply's nor merge's
    modules (nor h5py for a Parquet file)."""
    code = (
        "import sys, normstat, pyarrow as pa, pyarrow.parquet as pq\n"
        "pq.write_table(pa.table({'a': [1.0, 2.0]}), sys.argv[1])\n"
        "normstat.fit(sys.argv[1])\n"
        "mods = ('normstat.api.transforming', 'normstat.api.combining', 'h5py')\n"
        "print(sorted(m for m in mods if m in sys.modules))"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [sys.executable, "-c", code, f"{d}/t.parquet"],
            capture_output=True,
            text=True,
            check=True,
        )
    assert out.stdout.strip() == "[]"


def test_every_public_api_name_resolves():
    import normstat.api as api

    assert sorted(api.__all__) == sorted(api._EXPORTS)
    for name in api.__all__:
        assert getattr(api, name) is not None


def test_an_apply_imports_neither_the_fit_engine_nor_other_formats(tmp_path):
    """A table apply to Parquet loads neither the fit engine nor h5py; an array apply to NPY
    not pyarrow; neither serialises the artifact, which only HDF5 / Zarr outputs record."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import normstat

    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(6, 2))
    pq.write_table(pa.table({"a": [1.0, 2.0, 4.0]}), tmp_path / "t.parquet")
    for name in ("x.npy", "t.parquet"):
        normstat.save(normstat.fit(str(tmp_path / name)), str(tmp_path / f"{name}.json"))
    code = (
        "import sys, normstat, normstat.artifact as a\n"
        "src, out, heavy = sys.argv[1:]\n"
        "a.to_dict = lambda s: sys.exit('the artifact was serialised')\n"
        "normstat.apply(src + '.json', src, out)\n"
        "mods = ('normstat.engine.local', 'normstat.api.fitting', heavy)\n"
        "print(sorted(m for m in mods if m in sys.modules))"
    )
    for src, out, heavy in [("x.npy", "o.npy", "pyarrow"), ("t.parquet", "o.parquet", "h5py")]:
        args = [str(tmp_path / src), str(tmp_path / out), heavy]
        run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert (run.returncode, run.stdout.strip()) == (0, "[]"), run.stderr


def _fit_in_a_fresh_process(path, modules: tuple[str, ...]) -> tuple[str, str]:
    """``normstat.fit(path)``'s mean and var, and which of ``modules`` it imported."""
    code = (
        "import sys, normstat\n"
        "s = normstat.fit(sys.argv[1])\n"
        "print(s.mean.tolist(), s.var.tolist())\n"
        f"print(sorted(m for m in {modules!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    stats, mods = out.stdout.strip().splitlines()
    return stats, mods


def test_a_parquet_fit_does_not_import_pyarrow_fs_or_pandas(tmp_path):
    """``pyarrow.parquet`` imports ``pyarrow.fs`` (S3, GCS, Azure, SSL) and ``Array.to_numpy``
    imports pandas: a fit of a local file needs neither, and still gives the right statistics
    (nulls as missing values included)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, 6.0, None], "b": [1, 1, 4, None]}), path)
    stats, mods = _fit_in_a_fresh_process(path, ("pyarrow.fs", "pyarrow.parquet", "pandas"))
    assert stats == "[3.0, 2.0] [4.666666666666667, 2.0]"
    assert mods == "[]"


def test_a_parquet_fit_of_plain_columns_does_not_import_pyarrow_compute(tmp_path):
    """``pyarrow.compute`` costs 24 ms of a CLI fit's start (``python -X importtime``); columns
    without nulls or struct fields never need it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    x = np.arange(12.0).reshape(6, 2)
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1].astype(np.float32)}), path)
    stats, mods = _fit_in_a_fresh_process(path, ("pyarrow.compute",))
    assert stats == f"{x.mean(axis=0).tolist()} {x.var(axis=0).tolist()}"
    assert mods == "[]"
