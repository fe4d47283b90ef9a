"""normstat without its optional extras: dask, distributed and zarr hidden from the interpreter.

A fresh interpreter installs a meta-path finder that refuses those packages (as if they were not
installed), then imports normstat, fits with the local engine, and tries the features that need
them: each must fail with one clear line naming the extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json, sys

    HIDDEN = ("dask", "distributed", "zarr")

    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    import normstat

    out = {"loaded": sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)}
    stats = normstat.fit(sys.argv[1], chunk_size=7)
    out["mean"] = stats.mean.tolist()
    for name, call in [
        ("dask", lambda: normstat.fit(sys.argv[1], engine="dask")),
        ("zarr", lambda: normstat.fit(sys.argv[2])),
    ]:
        try:
            call()
            out[name] = "no error"
        except normstat.UsageError as exc:
            out[name] = str(exc)
    print(json.dumps(out))
    """
)


def test_normstat_works_without_dask_and_zarr_and_names_the_extras(tmp_path):
    x = np.random.default_rng(1).normal(4.0, 1.0, (40, 3))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "s.zarr").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "x.npy"), str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["loaded"] == []
    np.testing.assert_allclose(out["mean"], x.mean(axis=0), rtol=1e-13)
    assert "pip install 'normstat[dask]'" in out["dask"]
    assert "pip install 'normstat[zarr]'" in out["zarr"]


def test_import_normstat_loads_no_optional_extra():
    code = (
        "import sys, normstat; "
        "print([m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'zarr')])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
