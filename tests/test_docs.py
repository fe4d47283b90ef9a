"""Docs that cannot rot: the README's set-up commands are what CI runs, the CLI reference is
current and complete, every Python example runs, and the site builds in strict mode."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

import normstat
from normstat.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OPTIONAL = {"keras", "torch", "torchvision", "tensorflow", "jax", "matplotlib"}


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


def _gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "tools" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == _gen_cli().render(), (
        "docs/cli.md is stale: run python docs/tools/gen_cli.py"
    )


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_and_option_has_help_and_docs(name):
    cmd = main.commands[name]
    assert cmd.help and cmd.help.strip(), f"{name} has no help"
    assert "Python:" in cmd.help, f"{name}'s help does not name its Python twin"
    guide = (DOCS / "guide.md").read_text(encoding="utf-8")
    assert re.search(rf"^#+ .*\b{name}\b", guide, re.M), f"no section for {name} in guide.md"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts[0]} has no help"
    assert f"## normstat {name}\n" in (DOCS / "cli.md").read_text(encoding="utf-8")


def _python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture
def in_scratch(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    rng = np.random.default_rng(0)
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, rng.standard_normal((100, 3)))
    monkeypatch.chdir(tmp_path)
    digits = normstat.fit("examples/digits.h5:/images", axis=(1, 2))
    for name in ("stats.json", "stats.npz"):  # what the pages' examples read
        normstat.save(digits, name)
    return tmp_path


PAGES_WITH_CODE = sorted(p.name for p in DOCS.glob("*.md") if "```python" in p.read_text())


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_python_examples_run(page, in_scratch):
    """Every Python block of a page runs, in order, in one namespace (a page reads as one
    session); blocks that need an optional framework that is not installed are skipped."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block in _python_blocks(page):
        if block.startswith("# train.py"):
            ran += 1  # a script that reads stdin: run by the recipe test below
            continue
        try:
            exec(compile(block, f"{page} example", "exec"), namespace)  # noqa: S102
            ran += 1
        except ModuleNotFoundError as exc:
            if exc.name not in OPTIONAL:
                raise
    assert ran >= 1


def test_recipe_pipe_into_training_script(in_scratch):
    (train,) = [b for b in _python_blocks("recipes.md") if b.startswith("# train.py")]
    Path("train.py").write_text(train, encoding="utf-8")
    normstat_cmd = [sys.executable, "-m", "normstat"]
    subprocess.run([*normstat_cmd, "fit", "examples/digits.h5:/images", "--axis", "1",
                    "--axis", "2", "-o", "stats.json", "-q", "--force"], check=True)  # fmt: skip
    producer = subprocess.Popen(
        [*normstat_cmd, "apply", "stats.json", "examples/digits.h5:/images", "-o", "-"],
        stdout=subprocess.PIPE,
    )
    out = subprocess.run(
        [sys.executable, "train.py"], stdin=producer.stdout, capture_output=True, text=True
    )
    producer.stdout.close()
    assert producer.wait() == 0
    assert out.stdout.strip() == "trained on 1797 samples", out.stderr


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install '.[docs]')")
    res = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "site" / "cli" / "index.html").exists()
    assert not (tmp_path / "site" / "tools").exists()


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.name for p in DOCS.glob("*.md")}
    listed = set(re.findall(r":\s+(\S+\.md)\s*$", nav, flags=re.M))
    assert pages == listed
