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
