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
