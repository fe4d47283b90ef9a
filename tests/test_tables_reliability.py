"""Reliability for table sources and outputs: fuzzing of the CSV reader, signals and closed pipes
with Arrow streams, and resuming a checkpointed fit over Parquet shards."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import interrupt, start_piped

import normstat
from normstat.errors import NormstatError

FUZZ = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
installed = pytest.mark.skipif(
    shutil.which("normstat") is None, reason="needs the installed command"
)

CSV = b'id,name,a,b\n1,"x, y",1.5,2\n2,z,,3\n3,"q",4.25,-1\n4,w,NA,7\n'


@FUZZ
@given(st.data())
def test_csv_reader_on_mutated_files(data):
    raw = bytearray(CSV)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from(b'0123456789,."\n-eNA x'))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.csv"
        path.write_bytes(bytes(raw))
        try:
            stats = normstat.fit(str(path), workers=1)
        except NormstatError:
            return
        table = pacsv.read_csv(path)  # it loaded: pyarrow must read the same file
    # the numbers are those of the numeric columns pyarrow sees
    for j, name in enumerate(stats.features):
        col = table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
        col = col[~np.isnan(col)]
        assert stats.count[j] == col.size
        if col.size:
            assert stats.mean[j] == pytest.approx(col.mean(), rel=1e-12, abs=1e-12)
            assert stats.min[j] == col.min() and stats.max[j] == col.max()


# ------------------------------------------------------------------- signals and pipes

PRODUCER = """
import sys, time
sys.stdout.write("id,label,a,b\\n")
for i in range(200_000):
    sys.stdout.write(f"{i},row{i},{i * 0.5},{(i % 7) - 3}\\n")
    if i % 2000 == 0:
        sys.stdout.flush()
        if i == 8000:
            open(sys.argv[1], "w").close()
        time.sleep(0.02)
"""


@pytest.fixture
def table_stats(tmp_path):
    t = pa.table(
        {"id": [1, 2, 3], "label": ["a", "b", "c"], "a": [1.0, 2.0, 4.0], "b": [0.0, 1.0, 1.0]}
    )
    pq.write_table(t, tmp_path / "train.parquet")
    subprocess.run(
        ["normstat", "fit", "train.parquet", "-o", "stats.json", "-q"], cwd=tmp_path, check=True
    )
    return tmp_path / "stats.json"


@installed
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_table_apply(tmp_path, table_stats, sig, code):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"pre-existing")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args = ["apply", "stats.json", "-", "--input-format", "csv", "-o", "out.parquet", "--force"]
    producer, proc = start_piped(PRODUCER, args, tmp_path)
    time.sleep(0.3)
    assert interrupt(producer, proc, sig, code) < 1.5
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@installed
def test_closed_pipe_with_an_arrow_stream_ends_quietly(tmp_path, table_stats):
    n = 300_000
    pq.write_table(
        pa.table({"id": np.arange(n), "a": np.linspace(0, 1, n), "b": np.ones(n)}),
        tmp_path / "x.parquet",
    )
    proc = subprocess.run(
        "normstat apply stats.json x.parquet -o - | head -c 100 > /dev/null; exit ${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stderr.strip() == "" and proc.returncode in (0, 1), proc.stderr


# ----------------------------------------------------------------------------- resume


class _CrashAfter:
    def __init__(self, limit: int) -> None:
        self.limit, self.done = limit, 0

    def start(self, total, row_bytes: int = 0) -> None:
        pass

    def advance(self, n: int) -> None:
        self.done += n
        if self.done >= self.limit:
            raise RuntimeError("crash")


def test_checkpointed_parquet_fit_resumes_to_the_same_statistics(tmp_path):
    rng = np.random.default_rng(21)
    paths = []
    for i in range(3):
        t = pa.table(
            {
                "id": np.arange(1000) + 1000 * i,
                "x": rng.standard_normal(1000) * 3 + 1e6,
                "y": pa.array(
                    np.where(rng.random(1000) < 0.1, None, rng.standard_normal(1000)).tolist(),
                    pa.float64(),
                ),
            }
        )
        paths.append(str(tmp_path / f"p{i}.parquet"))
        pq.write_table(t, paths[-1], row_group_size=250)
    state = str(tmp_path / "state.npz")
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            paths,
            chunk_size=100,
            workers=1,
            checkpoint=state,
            checkpoint_every=1e-9,
            progress=_CrashAfter(1700),
        )
    assert os.path.exists(state)
    resumed = normstat.fit(paths, chunk_size=100, checkpoint=state, resume=True)
    whole = normstat.fit(paths, chunk_size=100)
    assert resumed.features == whole.features == ["id", "x", "y"]
    np.testing.assert_array_equal(resumed.count, whole.count)
    np.testing.assert_array_equal(resumed.nan_count, whole.nan_count)
    np.testing.assert_allclose(resumed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(resumed.var, whole.var, rtol=1e-12)
    assert not os.path.exists(state)


def test_csv_stdin_stream_is_not_resumable():
    with pytest.raises(NormstatError, match="stdin"):
        normstat.fit("-", input_format="csv", checkpoint="x.npz")


def test_arrow_stream_bytes_roundtrip_via_library(tmp_path, table_stats):
    """The stream `-o -` writes is a valid Arrow IPC stream with every row."""
    pq.write_table(
        pa.table({"id": [1, 2], "label": ["p", "q"], "a": [1.0, 3.0], "b": [1.0, 0.0]}),
        tmp_path / "y.parquet",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "normstat", "apply", "stats.json", "y.parquet", "-o", "-"],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    )
    table = pa.ipc.open_stream(io.BytesIO(proc.stdout)).read_all()
    assert table.column("label").to_pylist() == ["p", "q"]
    assert table.num_rows == 2
