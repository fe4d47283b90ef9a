"""Outputs written through the atomic temp-file get the usual permissions, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

from normstat.sinks.atomic import atomic_output


def test_new_file_honours_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.bin"
        with atomic_output(str(target)) as tmp, open(tmp, "wb") as f:
            f.write(b"x")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(old)
