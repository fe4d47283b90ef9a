"""The atomic output: written beside the target under a temporary name, renamed into place only
on success, with the usual permissions, and nothing left behind either way."""

from __future__ import annotations

import os
import stat

import pytest

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


def test_the_writer_creates_the_file_fresh_and_nothing_is_left(tmp_path):
    """The temporary path does not exist until the writer makes it (so no writer truncates an
    existing file: ext4 flushes such files to disk on close, see sinks/atomic.py)."""
    target = tmp_path / "out.bin"
    with atomic_output(str(target)) as tmp:
        assert not os.path.lexists(tmp)
        assert os.path.dirname(os.path.dirname(tmp)) == str(tmp_path)
        with open(tmp, "xb") as f:  # exclusive create: fails if anything is there
            f.write(b"data")
    assert target.read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


@pytest.mark.parametrize("make", ["file", "directory", "nothing"])
def test_failure_leaves_the_directory_as_it_was(tmp_path, make):
    (tmp_path / "out.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_output(str(tmp_path / "out.bin")) as tmp:
        if make == "file":
            open(tmp, "wb").close()
        elif make == "directory":
            os.makedirs(os.path.join(tmp, "part"))
        raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == b"old"


def test_a_writer_that_wrote_nothing_gives_an_empty_file(tmp_path):
    with atomic_output(str(tmp_path / "empty.csv")):
        pass
    assert (tmp_path / "empty.csv").read_bytes() == b""
