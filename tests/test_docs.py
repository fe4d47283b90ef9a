"""Docs that cannot rot: the README's set-up commands are what CI runs, every command and option
is documented, and the Python examples in docs/ run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
import numpy as np
import pytest

from normstat.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_setup_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = _bash_blocks(setup)
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && normstat fit examples/")
    assert commands[1].startswith("pip install '.[test]' && python -m pytest")
    for cmd in commands:
        assert cmd in ci, f"README command not in .ci/run: {cmd}"


def _all_docs() -> str:
    return "\n".join(p.read_text() for p in DOCS.rglob("*.md"))


def test_every_command_and_option_is_documented():
    docs = _all_docs()
    for name, cmd in main.commands.items():
        assert cmd.help, f"{name} has no help"
        assert re.search(rf"^#+ .*\b{name}\b", docs, re.M), f"no docs section for {name}"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"
                longest = max(param.opts, key=len)
                assert longest in docs, f"{name} {longest} is not documented"


def _python_blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S)):
            out.append((f"{page.name}#{i}", block))
    return out


@pytest.mark.parametrize(("where", "code"), _python_blocks(), ids=[w for w, _ in _python_blocks()])
def test_python_examples_run(where, code, tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    rng = np.random.default_rng(0)
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, rng.standard_normal((100, 3)))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})
    assert os.listdir(tmp_path)
