"""Tables stream: fit and apply over a Parquet file with 256 MB row groups stay far below the
size of the file and of a row group (slow: writes ~450 MB)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

_PEAK = "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"


def _write(path, rows: int = 1_800_000, cols: int = 64) -> None:
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(cols)]
    schema = pa.schema(
        [("id", pa.int64()), ("name", pa.string())] + [(n, pa.float32()) for n in names]
    )
    with pq.ParquetWriter(path, schema) as w:
        for lo in range(0, rows, 1 << 20):
            n = min(1 << 20, rows - lo)
            cols_ = [pa.array(np.arange(lo, lo + n)), pa.array(np.char.mod("u%d", np.arange(n)))]
            cols_ += [pa.array(rng.standard_normal(n, dtype=np.float32)) for _ in names]
            w.write_table(pa.Table.from_arrays(cols_, schema=schema), row_group_size=1 << 20)


def _peak_mb(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; {_PEAK}"], check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_parquet_fit_and_apply_memory_is_bounded(tmp_path):
    path, out = str(tmp_path / "big.parquet"), str(tmp_path / "out.parquet")
    _write(path)
    fit = _peak_mb(
        f"import normstat; s = normstat.fit({path!r}); assert s.count[0] == 1_800_000; "
        f"normstat.save(s, {str(tmp_path / 's.json')!r})"
    )
    apply = _peak_mb(
        f"import normstat; normstat.apply({str(tmp_path / 's.json')!r}, {path!r}, {out!r})"
    )
    assert pq.ParquetFile(out).metadata.num_rows == 1_800_000
    assert fit < 450 and apply < 450, (fit, apply)


@pytest.mark.slow
def test_arrow_file_of_one_huge_batch_streams(tmp_path):
    path = str(tmp_path / "one-batch.arrow")
    rng = np.random.default_rng(1)
    rows = 1_500_000
    t = pa.table({f"f{j}": rng.standard_normal(rows, dtype=np.float32) for j in range(64)})
    with pa.ipc.new_file(path, t.schema) as w:
        w.write_table(t, max_chunksize=rows)  # a single 384 MB record batch
    mean = float(t.column("f3").to_numpy().astype(np.float64).mean())
    del t
    peak = _peak_mb(
        f"import normstat; s = normstat.fit({path!r}); "
        f"assert abs(s.mean[3] - {mean!r}) < 1e-12, s.mean[3]"
    )
    assert peak < 300, peak


@pytest.mark.slow
def test_csv_fit_memory_does_not_grow_with_the_file(tmp_path):
    import pyarrow.csv as pacsv

    path = str(tmp_path / "big.csv")
    rng = np.random.default_rng(2)
    names = [f"f{j}" for j in range(32)]
    schema = pa.schema([(n, pa.float64()) for n in names])
    with pacsv.CSVWriter(path, schema) as w:
        for _ in range(20):  # ~380 MB of text
            cols = [pa.array(rng.standard_normal(50_000)) for _ in names]
            w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
    peak = _peak_mb(f"import normstat; s = normstat.fit({path!r}); assert s.count[0] == 1_000_000")
    assert peak < 250, peak
