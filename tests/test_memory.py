"""Memory is bounded by the chunk size, not the data size: a fit over a file larger than the
bound keeps its peak resident memory under it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

# VmHWM (peak resident set of this process image) as the child sees it: unlike ru_maxrss it is
# not inherited from the parent across fork + exec.
_PEAK = "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"


def test_npy_fit_memory_is_bounded_by_chunks_not_file(tmp_path):
    path = tmp_path / "big.npy"
    rows, cols = 800_000, 128  # 410 MB of float32
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)}
    rng = np.random.default_rng(0)
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_1_0(fp, header)
        for _ in range(0, rows, 100_000):
            fp.write(rng.standard_normal((100_000, cols), dtype=np.float32).tobytes())
    code = (
        f"import normstat; s = normstat.fit({str(path)!r}, chunk_size='16MB'); "
        f"assert s.count[0] == {rows}; {_PEAK}"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    peak_mb = int(out.split()[-1]) / 1024
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB for a 410 MB file"


def _limit_data(limit: int):
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


def test_fit_of_1gb_npy_under_a_data_limit_that_loading_it_would_break(tmp_path):
    path = tmp_path / "g1.npy"
    rows, cols = 2_000_000, 128  # 1.02 GB of float32
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)}
    rng = np.random.default_rng(1)
    block = rng.standard_normal((100_000, cols), dtype=np.float32).tobytes()
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_1_0(fp, header)
        for _ in range(rows // 100_000):
            fp.write(block)
    limit = 400 * 2**20  # prlimit --data=400MiB
    # the witness: loading the file whole cannot work under this limit
    load = subprocess.run(
        [sys.executable, "-c", f"import numpy; numpy.load({str(path)!r})"],
        preexec_fn=_limit_data(limit),
        capture_output=True,
        text=True,
    )
    assert load.returncode != 0 and "Unable to allocate" in load.stderr
    fit = subprocess.run(
        [sys.executable, "-m", "normstat", "fit", str(path), "-q", "-o", str(tmp_path / "s.json")],
        preexec_fn=_limit_data(limit),
        capture_output=True,
        text=True,
    )
    assert fit.returncode == 0, fit.stderr
    import normstat

    stats = normstat.load(str(tmp_path / "s.json"))
    assert stats.count[0] == rows
    ref = np.frombuffer(block, np.float32).reshape(-1, cols).astype(np.float64)
    np.testing.assert_allclose(stats.mean, ref.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.var, ref.var(axis=0), rtol=1e-9)
