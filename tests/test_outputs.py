"""Never lose, corrupt or leak data, on the output side: one commit protocol, one path identity
check, one ``--force`` rule, interrupts as a flag (docs/reliability.md names these tests).

Commands run as real processes (the installed ``normstat`` on this tree's path). No test writes
to the machine's ``/dev/null`` or ``/dev/stdout``: a broken build would replace them for every
process on the machine; private devices, FIFOs and links stand in for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("normstat") is None, reason="needs the installed normstat command"
)


def run(cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["normstat", *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kw
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(stderr: str, start: str = "Error:") -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), stderr
    return lines[0]


@pytest.fixture
def data(tmp_path):
    x = np.random.default_rng(0).standard_normal((500, 3))
    np.save(tmp_path / "f.npy", x)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = x
    assert run(tmp_path, "fit", "f.npy", "-o", "s.json", "-q").returncode == 0
    return tmp_path


# --- 1. the path identity check: the files really read, at or under OUT ----------------------


@pytest.mark.parametrize(
    "args",
    [
        ("fit", "f.npy", "-o", "f.npy"),
        ("fit", "f.npy", "-o", "f.npy", "--force"),
        ("fit", "f.h5:/x", "-o", "f.h5", "--force"),
        ("fit", "f.npy", "-o", "./sub/../f.npy", "--force"),
        ("merge", "s.json", "-o", "s.json", "--force"),
        ("plot", "s.json", "-o", "s.json", "--force"),
        ("apply", "s.json", "f.npy", "-o", "f.npy", "--force"),
    ],
)
def test_no_command_writes_over_its_input(data, args):
    (data / "sub").mkdir()
    before = {p.name: digest(p) for p in data.iterdir() if p.is_file()}
    proc = run(data, *args)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to write over an input" in one_line(proc.stderr)
    assert {p.name: digest(p) for p in data.iterdir() if p.is_file()} == before


def _hdf5_reading_other_files(d: Path, how: str) -> None:
    x = np.arange(30.0).reshape(10, 3)
    with h5py.File(d / "raw.h5", "w") as f:
        f["x"] = x
    with h5py.File(d / "in.h5", "w") as f:
        if how == "external link":
            f["x"] = h5py.ExternalLink("raw.h5", "/x")
        elif how == "external storage":
            x.tofile(d / "raw.bin")
            f.create_dataset("x", (10, 3), "<f8", external=[("raw.bin", 0, h5py.h5f.UNLIMITED)])
        else:
            layout = h5py.VirtualLayout((10, 3), "<f8")
            layout[:] = h5py.VirtualSource("raw.h5", "x", (10, 3))
            f.create_virtual_dataset("x", layout)


@pytest.mark.parametrize(
    ("how", "out"),
    [("external link", "raw.h5"), ("external storage", "raw.bin"), ("virtual", "raw.h5")],
)
def test_hdf5_files_read_through_links_are_inputs_too(tmp_path, how, out):
    _hdf5_reading_other_files(tmp_path, how)
    before = digest(tmp_path / out)
    proc = run(tmp_path, "fit", "in.h5:/x", "-o", out, "--force")
    assert proc.returncode == 2 and "refusing to write over an input" in one_line(proc.stderr)
    assert digest(tmp_path / out) == before


def test_an_input_inside_the_output_directory_is_refused(data):
    assert run(data, "apply", "s.json", "f.npy", "-o", "out.zarr", "-q").returncode == 0
    shutil.copy(data / "f.npy", data / "out.zarr" / "train.npy")
    proc = run(data, "apply", "s.json", "out.zarr/train.npy", "-o", "out.zarr", "--force")
    assert proc.returncode == 2 and "refusing to write over an input" in one_line(proc.stderr)
    assert (data / "out.zarr" / "train.npy").exists()


# --- 2. special files are written to directly, a symlink's target is replaced ----------------


def _null_device(d: Path) -> Path:
    dev = d / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (OSError, AttributeError):
        pytest.skip("cannot make a device node here")
    return dev


@pytest.mark.parametrize("command", ["fit", "merge", "apply", "plot"])
def test_a_device_is_written_to_not_replaced(data, command):
    pytest.importorskip("matplotlib") if command == "plot" else None
    dev = _null_device(data)
    args = {
        "fit": ("fit", "f.npy", "-o", "null"),
        "merge": ("merge", "s.json", "-o", "null"),
        "apply": ("apply", "s.json", "f.npy", "-o", "null"),
        "plot": ("plot", "s.json", "-o", "null"),
    }[command]
    proc = run(data, *args)  # no --force needed for a device
    assert stat.S_ISCHR(dev.lstat().st_mode), "the device was replaced"
    assert proc.returncode == 0 or command == "plot", proc.stderr
    assert not [p for p in os.listdir(data) if p.startswith(".")]


def test_a_fifo_and_a_link_to_a_fifo_are_written_to(data):
    """``-o FIFO``, and ``-o /dev/stdout`` when stdout is a pipe (a link to a FIFO)."""
    os.mkfifo(data / "fifo")
    os.symlink("fifo", data / "stdout")
    for name in ("fifo", "stdout"):
        got: list[bytes] = []
        reader = threading.Thread(target=lambda got=got: got.append((data / "fifo").read_bytes()))
        reader.start()
        proc = run(data, "apply", "s.json", "f.npy", "-o", name, "--dtype", "float64")
        reader.join(30)
        assert proc.returncode == 0, proc.stderr
        assert stat.S_ISFIFO((data / "fifo").lstat().st_mode)
        assert os.path.islink(data / "stdout")
        out = data / "copy.npy"
        out.write_bytes(got[0])
        x = np.load(data / "f.npy")
        assert np.load(out).shape == x.shape
        out.unlink()


def test_a_symlink_is_followed_and_its_target_replaced(data):
    (data / "real").mkdir()
    os.symlink("real/s2.json", data / "link.json")
    assert run(data, "fit", "f.h5:/x", "-o", "link.json", "-q").returncode == 0  # dangling link
    assert os.path.islink(data / "link.json")
    proc = run(data, "merge", "s.json", "-o", "link.json", "--force", "-q")
    assert proc.returncode == 0, proc.stderr
    assert os.path.islink(data / "link.json"), "the link was replaced by a file"
    merged = json.loads((data / "real" / "s2.json").read_text())
    assert merged["source"]["paths"] == ["f.npy"]
    assert sorted(os.listdir(data / "real")) == ["s2.json"]


# --- 3. one --force rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("fit", "f.npy", "-o", "old.json"),
        ("merge", "s.json", "-o", "old.json"),
        ("apply", "s.json", "f.npy", "-o", "old.json"),
        ("plot", "s.json", "-o", "old.png"),
    ],
)
def test_an_existing_output_needs_force(data, args):
    out = data / args[-1]
    out.write_bytes(b"keep me")
    proc = run(data, *args)
    assert proc.returncode == 2 and "output exists" in one_line(proc.stderr)
    assert out.read_bytes() == b"keep me"
    if args[0] != "plot" or _has_matplotlib():
        assert run(data, *args, "--force").returncode == 0
        assert out.read_bytes() != b"keep me"


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# --- 5. a full disk: one line, nothing left --------------------------------------------------


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_full_disk_is_one_error_line_and_leaves_nothing(tmp_path):
    """A 2 MB tmpfs when mounting works (root), else RLIMIT_FSIZE as the stand-in."""
    x = np.random.default_rng(1).standard_normal((300_000, 8))
    np.save(tmp_path / "x.npy", x)
    assert run(tmp_path, "fit", "x.npy", "-o", "s.json", "-q").returncode == 0
    small = tmp_path / "small"
    small.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True
        ).returncode
        == 0
    )
    try:
        out = str(small / "out.npy") if mounted else "out.npy"
        limit = None if mounted else _limit_file_size
        proc = run(tmp_path, "apply", "s.json", "x.npy", "-o", out, preexec_fn=limit)
        assert proc.returncode == 1, proc.stderr
        reason = "No space left on device" if mounted else "File too large"
        assert one_line(proc.stderr) == f"Error: {out}: cannot write the output ({reason})"
        assert os.listdir(small) == []
        assert sorted(os.listdir(tmp_path)) == ["s.json", "small", "x.npy"]
    finally:
        if mounted:
            subprocess.run(["umount", str(small)], check=True)


# --- 6. no-clobber commits, stale temporaries ------------------------------------------------


def test_a_file_that_appears_during_the_run_is_not_overwritten(tmp_path):
    from normstat.errors import UsageError
    from normstat.sinks.atomic import atomic_output

    out = tmp_path / "out.json"
    with pytest.raises(UsageError, match="appeared"), atomic_output(str(out)) as tmp:
        Path(tmp).write_text("ours")
        out.write_text("theirs")
    assert out.read_text() == "theirs"
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_directory_that_appears_during_the_run_is_not_replaced(tmp_path):
    from normstat.errors import UsageError
    from normstat.sinks.directory import atomic_directory

    out = tmp_path / "out.zarr"
    with pytest.raises(UsageError, match="appeared"), atomic_directory(str(out)) as tmp:
        Path(tmp, "ours").write_text("1")
        out.mkdir()
        (out / "theirs").write_text("1")
    assert os.listdir(out) == ["theirs"]
    assert os.listdir(tmp_path) == ["out.zarr"]


def test_replacing_a_directory_is_one_step_and_leaves_nothing(tmp_path):
    from normstat.sinks.directory import atomic_directory

    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "old").write_text("1")
    with atomic_directory(str(out)) as tmp:
        Path(tmp, "new").write_text("1")
    assert os.listdir(out) == ["new"]
    assert os.listdir(tmp_path) == ["out.zarr"]


def test_two_concurrent_applies_to_one_output_do_not_both_win(tmp_path):
    x = np.random.default_rng(2).standard_normal((400_000, 4))
    np.save(tmp_path / "x.npy", x)
    assert run(tmp_path, "fit", "x.npy", "-o", "s.json", "-q").returncode == 0
    args = ["normstat", "apply", "s.json", "x.npy", "-o", "out.npy", "--chunk-size", "5000"]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    wrote = [err for code, err in results if code == 0]
    assert len(wrote) == 1, results
    code, err = next(r for r in results if r[0] != 0)
    assert code == 2 and ("output exists" in err or "appeared" in err), err
    assert sorted(os.listdir(tmp_path)) == ["out.npy", "s.json", "x.npy"]


def test_temporaries_of_dead_processes_are_removed(data):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = data / f".out.npy.normstat-{dead.pid}.x1y2.tmp"
    stale.mkdir()
    (stale / "out.npy").write_bytes(b"\0" * 1000)
    live = data / f".out.npy.normstat-{os.getpid()}.x1y2.tmp"
    live.mkdir()
    proc = run(data, "apply", "s.json", "f.npy", "-o", "out.npy", "-q")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert live.exists()  # a running process's temporary is not touched


# --- 7. checkpoints survive until the output is committed ------------------------------------


def test_the_output_is_checked_before_the_pass(data):
    proc = run(data, "fit", "f.npy", "--checkpoint", "ck.npz", "--checkpoint-every", "1e-9",
               "-o", "nodir/s.json")  # fmt: skip
    assert proc.returncode == 2
    assert "output's directory does not exist" in one_line(proc.stderr)
    assert not (data / "ck.npz").exists()


def test_the_checkpoint_is_kept_until_the_output_is_committed(data, monkeypatch):
    import normstat.api.fitting as fitting

    def fail(stats, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fitting, "save", fail)
    monkeypatch.chdir(data)
    ck = str(data / "ck.npz")
    with pytest.raises(OSError):
        fitting.fit("f.npy", checkpoint=ck, checkpoint_every=1e-9, chunk_size=100,
                    output=str(data / "out.json"))  # fmt: skip
    assert os.path.exists(ck), "the checkpoint was deleted before the output was written"
    proc = run(data, "fit", "f.npy", "--checkpoint", "ck.npz", "--resume", "--chunk-size", "100",
               "-o", "nodir/s.json")  # fmt: skip
    assert proc.returncode == 2 and os.path.exists(ck)
    proc = run(data, "fit", "f.npy", "--checkpoint", "ck.npz", "--resume", "--chunk-size", "100",
               "-o", "out.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(ck)


# --- 8. stdout closed, short writes ----------------------------------------------------------


@pytest.mark.parametrize("args", [("fit", "f.npy"), ("apply", "s.json", "f.npy", "-o", "-")])
def test_a_closed_stdout_is_one_error_line(data, args):
    proc = run(data, *args, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1
    assert "stdout is closed" in one_line(proc.stderr)


def test_the_npy_stream_writes_every_byte_of_short_writes():
    from normstat.sinks import OutputSpec
    from normstat.sinks.npy import NpyStreamWriter

    class Short:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b) -> int:
            b = memoryview(b).cast("B")[:7]
            self.data += b
            return len(b)

        def flush(self) -> None:
            pass

    x = np.arange(60.0).reshape(20, 3)
    sink = Short()
    w = NpyStreamWriter("-", OutputSpec(x.shape, x.dtype), stream=sink)  # type: ignore[arg-type]
    w.write(x[:10])
    w.write(x[10:])
    w.close()
    import io

    assert np.array_equal(np.load(io.BytesIO(bytes(sink.data))), x)


def test_a_consumer_that_dies_mid_stream_fails_the_producer(data):
    np.save(data / "big.npy", np.random.default_rng(3).standard_normal((200_000, 3)))
    proc = subprocess.run(
        "normstat apply s.json big.npy -o - --chunk-size 1000 | head -c 1000 > /dev/null; "
        "exit ${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        cwd=data,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


# --- 9. directory expansion skips writers' temporaries ---------------------------------------


def test_hidden_and_underscore_directories_are_not_shards(tmp_path):
    d = tmp_path / "t"
    for sub in (".hidden", "_temporary", ".a_std.csv.1234.tmp", "part"):
        (d / sub).mkdir(parents=True)
        (d / sub / "p.csv").write_text("a,b\n1,2\n")
    proc = run(tmp_path, "fit", "t/", "-q")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source"]["paths"] == ["t/part/p.csv"]


# --- 4. interrupts: the flag is the truth; never a commit after a signal ---------------------


def _tree_digest(path: Path) -> str:
    if path.is_file():
        return digest(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _load_any(path: Path) -> int:
    """Rows of a complete output (raises on a partial one)."""
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            return int(f["/data"].shape[0])
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.read_metadata(path).num_rows)
    import zarr

    return int(zarr.open(str(path), mode="r").shape[0])


def _wait_for_handlers(pid: int) -> None:
    """Until the process catches SIGINT and SIGTERM (``SigCgt`` in /proc), or has ended."""
    wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & wanted == wanted:
            return
        time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npy", ".h5", ".zarr", ".parquet"])
def test_interrupts_at_random_moments_tell_the_truth(tmp_path, suffix):
    """20 signals at random moments of ``apply --force`` over an existing output: exit 130/143,
    one line, no temporary left, the input untouched, and the old output intact unless the line
    says the new one had been written (then the new one is complete). A signal after the
    "wrote OUT" line exits 130/143 with that line only."""
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    rows = 300_000
    x = np.random.default_rng(4).standard_normal((rows, 8))
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({f"c{i}": x[:, i] for i in range(8)}), tmp_path / "in.parquet")
        src = "in.parquet"
    else:
        np.save(tmp_path / "in.npy", x)
        src = "in.npy"
    out = tmp_path / f"out{suffix}"
    assert run(tmp_path, "fit", src, "-o", "s.json", "-q").returncode == 0
    apply = ["apply", "s.json", src, "-o", out.name, "--chunk-size", "20000", "--force"]
    assert run(tmp_path, *apply, "--method", "minmax", "-q").returncode == 0  # the old output
    names = sorted(os.listdir(tmp_path))
    source_digest, old_digest = digest(tmp_path / src), _tree_digest(out)
    started = time.monotonic()
    assert run(tmp_path, *apply, "-q").returncode == 0
    length = time.monotonic() - started
    _tree_digest(out) != old_digest or pytest.fail("the new output equals the old one")
    rng = np.random.default_rng(5)
    for k in range(20):
        assert run(tmp_path, *apply, "--method", "minmax", "-q").returncode == 0
        old_digest = _tree_digest(out)
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        proc = subprocess.Popen(["normstat", *apply], cwd=tmp_path, stderr=subprocess.PIPE)
        _wait_for_handlers(proc.pid)  # before that, the signal is Python's, not normstat's
        time.sleep(float(rng.uniform(0.0, length)))
        if proc.poll() is None:
            proc.send_signal(sig)
        _, err_bytes = proc.communicate(timeout=60)
        err = err_bytes.decode()
        assert "Exception ignored" not in err and "Traceback" not in err, err
        assert sorted(os.listdir(tmp_path)) == names, f"left behind: {os.listdir(tmp_path)}"
        assert digest(tmp_path / src) == source_digest
        if proc.returncode == 0:  # it had finished: a complete new output, reported
            assert one_line(err, f"wrote {out.name}") and _load_any(out) == rows
            continue
        assert proc.returncode == 128 + sig, err
        line = one_line(err, "")
        if line == f"wrote {out.name}":  # the signal came after the report: it is the one line
            assert _load_any(out) == rows
            continue
        assert line.startswith(f"Error: interrupted by {signal.Signals(sig).name}"), line
        if line.endswith("no output written"):
            assert _tree_digest(out) == old_digest, "old output changed, yet 'no output written'"
        else:
            assert "had already been written" in line and _load_any(out) == rows


def test_nothing_is_committed_after_a_signal(tmp_path, monkeypatch):
    """The commit checks the flag: an interrupt that a library swallowed still prevents it."""
    from normstat import interrupts
    from normstat.sinks.atomic import atomic_output

    out = tmp_path / "out.json"
    out.write_text("old")
    monkeypatch.setattr(interrupts, "received", [signal.SIGTERM])
    with pytest.raises(interrupts.Interrupted), atomic_output(str(out)) as tmp:
        Path(tmp).write_text("new")
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


PRODUCER = """
import sys, time, numpy as np
np.lib.format.write_array_header_1_0(sys.stdout.buffer,
    {"descr": "<f8", "fortran_order": False, "shape": (100_000, 4)})
for i in range(1000):
    sys.stdout.buffer.write(np.ones((100, 4)).tobytes())
    sys.stdout.buffer.flush()
    if i == 3:
        open(sys.argv[1], "w").close()
    time.sleep(0.02)
"""


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT])
def test_sighup_and_sigquit_are_handled_like_sigterm(tmp_path, sig):
    from processes import interrupt, start_piped

    (tmp_path / "out.json").write_text("old")
    args = ["fit", "-", "--input-format", "npy", "--chunk-size", "100", "-o", "out.json"]
    producer, proc = start_piped(PRODUCER, [*args, "--force"], tmp_path)
    time.sleep(0.3)
    assert interrupt(producer, proc, sig, 128 + sig) < 1.0
    assert os.listdir(tmp_path) == ["out.json"]
    assert (tmp_path / "out.json").read_text() == "old"


def test_temporaries_named_by_earlier_versions_are_reported_not_removed(data):
    """``.NAME.XXXXXXXX.tmp`` (before temporaries carried the owner's pid): nothing says whether
    one is stale, or normstat's at all, so it is named on stderr and left as it is."""
    old = data / ".out.npy.k2j4_x9q.tmp"
    old.mkdir()
    (old / "out.npy").write_bytes(b"\0" * 1000)
    zarr_old = data / ".o.zarr.a1b2c3d4.tmp.old"
    zarr_old.mkdir()
    user = data / ".notes.tmp"  # not a temporary's name: not mentioned
    user.write_text("mine")
    proc = run(data, "apply", "s.json", "f.npy", "-o", "out.npy")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1, proc.stderr
    assert ".out.npy.k2j4_x9q.tmp" in warning[0] and ".o.zarr.a1b2c3d4.tmp.old" in warning[0]
    assert ".notes.tmp" not in warning[0]
    assert (old / "out.npy").stat().st_size == 1000 and zarr_old.is_dir() and user.exists()
    assert (data / "out.npy").exists()
