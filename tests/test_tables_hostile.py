"""Damaged and hostile tables through the installed command: one line naming the file, exit 1,
no traceback, nothing written."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pytest
from processes import apply_past_file_size_limit
from tables_data import arrow_stream, numbers, table, write

import normstat

pytestmark = pytest.mark.skipif(
    shutil.which("normstat") is None, reason="needs the installed command"
)


@pytest.fixture
def files(tmp_path):
    x, nulls = numbers(n=3000)
    t = table(x, nulls)
    write("parquet", t, str(tmp_path / "whole.parquet"))
    raw = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "half.parquet").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.parquet").write_text("a,b\n1,2\n")
    damaged = bytearray(raw)  # data pages overwritten, footer intact: found while decoding
    damaged[len(raw) // 3 : len(raw) // 3 + len(raw) // 4] = b"Z" * (len(raw) // 4)
    (tmp_path / "pages.parquet").write_bytes(bytes(damaged))
    normstat.save(normstat.fit(str(tmp_path / "whole.parquet")), str(tmp_path / "whole.json"))
    write("arrow", t, str(tmp_path / "whole.arrow"))
    raw = (tmp_path / "whole.arrow").read_bytes()
    (tmp_path / "half.arrow").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "half.arrows").write_bytes(arrow_stream(t)[:5000])
    return tmp_path


CASES = {
    "truncated parquet": (["fit", "half.parquet"], "half.parquet: not a readable Parquet file"),
    "csv named parquet": (["fit", "text.parquet"], "text.parquet: not a readable Parquet file"),
    "damaged data pages": (["fit", "pages.parquet"], "pages.parquet: cannot read column "),
    "damaged pages, apply": (
        ["apply", "whole.json", "pages.parquet", "-o", "out.parquet"],
        "pages.parquet: cannot read",
    ),
    "truncated arrow": (["fit", "half.arrow"], "half.arrow: "),
    "empty csv": (["fit", "empty.csv"], "empty.csv: not a readable CSV file"),
    "binary csv": (["fit", "binary.csv"], "binary.csv: "),
    "ragged csv": (
        ["fit", "ragged.csv"],
        "ragged.csv: not a readable CSV file (CSV parse error: ",
    ),
    "truncated stream": (["fit", "half.arrows"], "half.arrows: "),
}


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_table_gets_one_line(files, name):
    args, fragment = CASES[name]
    before = sorted(p.name for p in files.iterdir())
    proc = subprocess.run(["normstat", *args], cwd=files, capture_output=True, text=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert fragment in lines[0]
    assert sorted(p.name for p in files.iterdir()) == before


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".csv"])
def test_file_size_limit_gives_one_line_and_no_partial_output(tmp_path, suffix):
    rng = np.random.default_rng(5)
    t = pa.table({"id": np.arange(100_000), "x": rng.standard_normal(100_000)})
    write("parquet", t, str(tmp_path / "x.parquet"))
    subprocess.run(["normstat", "fit", "x.parquet", "-o", "s.json", "-q"], cwd=tmp_path, check=True)
    apply_past_file_size_limit(tmp_path, "s.json", "x.parquet", f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "x.parquet"]
