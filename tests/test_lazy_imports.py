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
