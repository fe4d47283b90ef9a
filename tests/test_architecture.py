"""The dependency rules of docs/architecture.md, held by tests.

- Packages import only the layers below them (:data:`LAYERS`), and no module imports itself
  back through others (no cycles), read from the code with ``ast``, function-level imports too.
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


LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("lazy", "interrupts", "arrowbuf"),  # standard library helpers; numpy <-> Arrow buffers
    ("normstat",),  # the package: its version, and its names loaded lazily
    ("core", "storage", "numtext"),  # pure numerics; where data lives; numbers as JSON text
    ("sources", "sinks"),  # reading, writing: neither imports the other
    ("engine", "artifact"),
    ("api",),
    ("report",),  # presentation: the text of show / diff / drift
    ("plot", "frameworks"),
    ("cli",),
    ("entry",),
    ("__main__",),
)
"""Each group (a top-level module, or a subpackage) of ``normstat``, bottom up: a group may
import its own modules and those of the groups below it, nothing above or beside it. A new
module must be placed here to pass."""

RANK = {group: i for i, layer in enumerate(LAYERS) for group in layer}


def _module_name(path: Path, pkg: Path) -> str:
    parts = ("normstat", *path.relative_to(pkg).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:`` (never run)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def module_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """normstat module -> the normstat modules it imports, at the top or inside a function."""
    modules = {_module_name(p, pkg): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.split(".")[0] == "normstat")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{parent}.{base}" if base else parent
                if base.split(".")[0] != "normstat":
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    edges.add(sub if sub in modules else base)
        edges.discard(name)
    return graph


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "normstat"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, edges in sorted(graph.items()):
        g = _group(mod)
        if g not in RANK:
            bad.append(f"{mod}: its group {g!r} has no place in LAYERS")
            continue
        for dep in sorted(edges):
            d = _group(dep)
            if d != g and RANK.get(d, len(LAYERS)) >= RANK[g]:
                bad.append(f"{mod} -> {dep}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_packages_import_only_the_layers_below_them():
    assert layer_violations(module_graph()) == []


def test_no_module_imports_itself_back_through_others():
    assert cycles(module_graph()) == []


def test_the_cli_choice_of_output_formats_is_the_output_table():
    from normstat.core.choices import OUTPUT_FORMATS
    from normstat.sinks import OUTPUTS

    assert tuple(f.name for f in OUTPUTS) == OUTPUT_FORMATS


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
