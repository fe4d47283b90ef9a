"""The docs site: the CLI reference is current and complete, examples run, strict build."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from normstat.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OPTIONAL = {"keras", "torch", "torchvision", "tensorflow", "jax", "matplotlib"}


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
def test_every_command_and_option_has_help(name):
    cmd = main.commands[name]
    assert cmd.help and cmd.help.strip(), f"{name} has no help"
    assert "Python:" in cmd.help, f"{name}'s help does not name its Python twin"
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
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", ["python.md", "frameworks.md"])
def test_python_examples_run(page, in_scratch):
    namespace: dict[str, object] = {}
    ran = 0
    for block in _python_blocks(page):
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
                    "--axis", "2", "-o", "stats.json", "-q"], check=True)  # fmt: skip
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
