"""The dependency rules of docs/decisions.md, held by tests.

- ``normstat/core`` is pure: numpy, the standard library and ``normstat.errors`` only.
- ``import normstat`` loads neither click, h5py, pyarrow nor dask.
- Only ``cli.py`` imports click.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "normstat"
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_is_pure_numpy():
    for path in (PKG / "core").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = (
                top in STDLIB
                or top == "numpy"
                or name.startswith("normstat.core")
                or name == "normstat.errors"
            )
            assert allowed, f"{path.name} imports {name}"


def test_errors_imports_nothing_from_normstat():
    assert not [n for n in _imports(PKG / "errors.py") if n.startswith("normstat")]


def test_only_the_cli_imports_click():
    for path in PKG.rglob("*.py"):
        if path.name != "cli.py":
            assert "click" not in {n.split(".")[0] for n in _imports(path)}, path


def test_import_normstat_is_light():
    code = (
        "import sys, normstat; heavy = {'click', 'h5py', 'pyarrow', 'dask', 'distributed'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent
    ).stdout.strip()
    assert out == "[]"


def test_cli_help_imports_no_engine():
    """`normstat --help` builds every command without numpy, h5py or pyarrow (it stays fast)."""
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom normstat.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0\n"
        "for c in main.commands: CliRunner().invoke(main, [c, '--help'])\n"
        "print(sorted({'numpy', 'h5py', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent
    ).stdout.strip()
    assert out == "[]"
