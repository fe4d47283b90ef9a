"""Wide artifacts (many features): the JSON is written one key at a time, and read back with
numpy's number parser once it is large; both give the same floats as the strict ``json`` path."""

from __future__ import annotations

import json

import numpy as np
import pytest

import normstat
from normstat import artifact
from normstat.errors import ArtifactError, NormstatWarning

FIELDS = ("count", "nan_count", "mean", "var", "min", "max", "m2")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 40_000)) * 10.0 ** rng.integers(-100, 100, 40_000)
    x[:, 7] = np.nan  # an empty feature: null statistics
    with pytest.warns(NormstatWarning):
        stats = normstat.fit_arrays(x, axis=1)
    path = tmp_path_factory.mktemp("wide") / "s.json"
    artifact.save(stats, str(path))
    assert path.stat().st_size > artifact._FAST_BYTES  # the fast path is taken
    return path


def test_the_fast_reader_gives_the_strict_readers_floats(wide):
    fast = artifact.load(str(wide))
    strict = artifact.from_dict(json.loads(wide.read_text()))
    for k in FIELDS:
        a, b = getattr(fast, k), getattr(strict, k)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), k


def test_a_damaged_wide_file_is_still_refused_by_name(wide, tmp_path):
    text = wide.read_text().replace('"mean": [', '"mean": ["x", ', 1)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ArtifactError, match="mean"):
        artifact.load(str(bad))


# --- the layout written a block at a time, read a block at a time (issue 14: huge artifacts) ---


def _reference_text(a: np.ndarray) -> str:
    """What ``json`` writes for the whole array at once: the layout before block writing."""
    obj = a.astype(object)
    if a.dtype.kind == "f":
        obj[~np.isfinite(a)] = None
    return json.dumps(obj.tolist(), allow_nan=False, separators=(", ", ": "))


@pytest.mark.parametrize(
    "shape", [(100_000,), (3, 40_000), (2, 70_000), (70_000, 2), (5, 4, 9_000), (0,), (2, 0)]
)
def test_block_writing_gives_the_text_json_gives(shape):
    import io

    from normstat.core.numtext import dump_array

    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-300, 300, shape)
    a[a > 2.0] = np.nan
    out = io.StringIO()
    dump_array(a, out)
    assert out.getvalue() == _reference_text(a)
    ints = rng.integers(0, 2**53, shape)
    out = io.StringIO()
    dump_array(ints, out)
    assert out.getvalue() == _reference_text(ints)


def test_reading_in_tiny_pieces_gives_the_strict_readers_floats(wide, monkeypatch):
    from normstat.core import numtext

    monkeypatch.setattr(numtext, "READ_BYTES", 37)  # every value split somewhere
    fast = artifact.load(str(wide))
    strict = artifact.from_dict(json.loads(wide.read_text()))
    for k in FIELDS:
        assert np.array_equal(getattr(fast, k), getattr(strict, k), equal_nan=True), k


def _fitted(tmp_path, x, name, **kw):
    stats = normstat.fit_arrays(x, **kw)
    path = tmp_path / name
    artifact.save(stats, str(path))
    return path


@pytest.mark.parametrize("block", [1, 7, 4096, 1 << 16])
def test_show_read_in_blocks_prints_what_the_whole_table_prints(wide, tmp_path, block):
    from normstat import report

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (6, 8, 7, 3)).astype(np.float64)
    images[:, 0, 0, 0] = 9.0  # a constant feature
    shaped = _fitted(tmp_path, images, "images.json", axis=(1, 2, 3))
    cols = normstat.fit_arrays(rng.standard_normal((50, 30)))
    cols.features = [f"c{i}" for i in range(30)]
    named = tmp_path / "named.json"
    artifact.save(cols, str(named))
    paths = [wide, shaped, named] if block >= 4096 else [shaped, named]
    for path in list(paths):  # the same statistics as NPZ
        stats = artifact.load(str(path))
        paths.append(path.with_suffix(".npz"))
        artifact.save(stats, str(paths[-1]))
    for path in paths:
        big = path.stat().st_size > artifact.STREAM_BYTES
        monkey = pytest.MonkeyPatch()
        monkey.setattr(artifact, "STREAM_BYTES", 0)  # small files streamed here too
        stream = artifact.stream(path, block)
        assert stream is not None
        header, shape, blocks = stream
        expected = report.table(artifact.load(str(path)), 20)
        seen = 0
        for start, part in blocks:
            assert start == seen and part.moments.count.size <= block
            seen += part.moments.count.size
        assert seen == int(np.prod(shape))
        with monkeypatch_block(block):
            assert report.show_file(str(path), 20) == expected
        assert report.show_file(str(path), None) == report.table(artifact.load(str(path)), None)
        monkey.undo()
        assert big or report.show_file(str(path), 20) == expected
    text = report.show_file(str(shaped), 20)
    assert "[7, 6, 2]" in text and "1 constant, 0 near-constant" in text


class monkeypatch_block:  # noqa: N801  (a context manager read as a phrase)
    def __init__(self, block):
        self.block = block

    def __enter__(self):
        self.saved = artifact.stream.__defaults__
        artifact.stream.__defaults__ = (self.block,)

    def __exit__(self, *exc):
        artifact.stream.__defaults__ = self.saved


def test_show_memory_does_not_grow_with_the_features(tmp_path):
    import tracemalloc

    from normstat import report

    x = np.random.default_rng(2).standard_normal((2, 300_000)).astype(np.float32)
    path = _fitted(tmp_path, x, "w.json", axis=1)
    npz = tmp_path / "w.npz"
    artifact.save(artifact.load(str(path)), str(npz))
    for art in (path, npz):
        tracemalloc.start()
        whole = report.table(artifact.load(str(art)), 20)
        _, load_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        streamed = report.show_file(str(art), 20)
        _, show_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert streamed == whole
        arrays = 8 * 8 * 300_000  # the artifact's eight statistics as float64: 19 MB
        # show: a block of 16,384 features and a 256 KiB read of each array, whatever the width
        assert load_peak > arrays and show_peak < 12e6, (art, load_peak, show_peak)


DAMAGE = [
    ('"mean": [', '"mean": [NaN, ', "mean"),
    ('"std": [', '"std": ["x", ', "std"),
    ('"min": [', '"min": [1e999, ', "min"),
    ('"max": [', '"max": [{}, ', "max"),
    ('"m2": [', '"m2": [1.0, ', "m2"),  # one value too many
    ('"var": [', '"var": [[1.0], ', "var"),  # nested deeper than feature_shape
    ('"count": [3, ', '"count": [', "count"),  # one value too few
]


@pytest.mark.parametrize("old,new,key", DAMAGE)
def test_damage_inside_an_array_is_named_by_load_and_by_show(wide, tmp_path, old, new, key):
    from normstat import report

    bad = tmp_path / "bad.json"
    bad.write_text(wide.read_text().replace(old, new, 1))
    with pytest.raises(ArtifactError, match=f"'{key}'"):
        artifact.load(str(bad))
    # show reads the arrays side by side: a shifted array may first show as another's error
    with pytest.raises(ArtifactError, match="'count'|'mean'" if key == "count" else f"'{key}'"):
        report.show_file(str(bad), 20)


def test_a_truncated_wide_file_is_refused(wide, tmp_path):
    from normstat import report

    data = wide.read_bytes()
    for cut in (len(data) // 2, len(data) - 3):
        bad = tmp_path / f"cut{cut}.json"
        bad.write_bytes(data[:cut])
        with pytest.raises(ArtifactError):
            artifact.load(str(bad))
        with pytest.raises(ArtifactError):
            report.show_file(str(bad), 20)


def test_a_damaged_wide_npz_is_refused_by_show(tmp_path):
    """A CRC error or a member cut short deep inside an array: found as show reads on."""
    import zipfile

    from normstat import report

    stats = normstat.fit_arrays(np.random.default_rng(4).standard_normal((3, 100_000)))
    good = tmp_path / "s.npz"
    artifact.save(stats, str(good))
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("max.npy")
    data = bytearray(good.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    flipped = tmp_path / "crc.npz"
    data[start + info.compress_size - 100] ^= 0xFF  # the last values of 'max': a CRC error
    flipped.write_bytes(bytes(data))
    for bad in (flipped,):
        with pytest.raises(ArtifactError, match="CRC|max"):
            report.show_file(str(bad), 20)
        with pytest.raises(ArtifactError):
            artifact.load(str(bad))
