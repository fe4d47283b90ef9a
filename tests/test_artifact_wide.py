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


def _leaves(doc, out):
    """The leaves of ``json.load``'s nested lists, depth first, and the shape they make."""
    if isinstance(doc, list):
        for x in doc:
            _leaves(x, out)
    else:
        out.append(doc)
    return out


def _same_as_json_reads(text: str, a: np.ndarray) -> None:
    """``json`` reads ``text`` to the values of ``a`` bit for bit (non-finite as ``null``),
    floats as floats and integers as integers, nested as ``a.tolist()`` is."""
    doc = json.loads(text)
    assert np.shape(doc) == a.shape or a.size == 0
    if a.size == 0:
        assert doc == a.tolist()
        return
    leaves = _leaves(doc, [])
    flat = a.reshape(-1)
    assert len(leaves) == flat.size
    if a.dtype.kind == "f":
        finite = np.isfinite(flat)
        assert all(leaves[i] is None for i in np.flatnonzero(~finite))
        kept = [leaves[i] for i in np.flatnonzero(finite)]
        assert all(type(v) is float for v in kept)
        got = np.array(kept, dtype=np.float64)
        assert np.array_equal(got.view(np.uint64), flat[finite].view(np.uint64))
    else:
        assert all(type(v) is int for v in leaves) and leaves == flat.tolist()


@pytest.mark.parametrize(
    "shape", [(100_000,), (3, 40_000), (2, 70_000), (70_000, 2), (5, 4, 9_000), (0,), (2, 0)]
)
@pytest.mark.parametrize("arrow_values", [0, 1 << 14])  # every array through Arrow; the default
def test_block_writing_gives_text_json_reads_to_the_same_values(shape, arrow_values, monkeypatch):
    import io

    from normstat import numtext
    from normstat.numtext import dump_array

    monkeypatch.setattr(numtext, "ARROW_VALUES", arrow_values)

    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-300, 300, shape)
    a[a > 2.0] = np.nan
    out = io.StringIO()
    dump_array(a, out)
    _same_as_json_reads(out.getvalue(), a)
    ints = rng.integers(0, 2**53, shape)
    out = io.StringIO()
    dump_array(ints, out)
    _same_as_json_reads(out.getvalue(), ints)
    assert out.getvalue() == json.dumps(ints.tolist())  # integers: json's own text


def _edge_floats(n: int, seed: int) -> np.ndarray:
    """Random bit patterns (every exponent, subnormals, NaN payloads, infinities) and the
    values where formatting goes wrong: signed zeros, extremes, integral and power-of-ten
    floats around the switch between fixed and exponent notation."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)
    tiny = rng.integers(1, 2**52, 1000, dtype=np.uint64).view(np.float64)  # subnormals
    special = [
        0.0,
        -0.0,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        2.225073858507201e-308,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        np.nan,
        np.inf,
        -np.inf,
        1.0,
        -1.0,
        3.0,
        1e16,
        1e15,
        9007199254740993.0,
        1e21,
        1e22,
        1e-4,
        1e-5,
        1.5e-7,
        0.1,
        1 / 3,
        123456789.0,
        -(2.0**1023),
        2.0**-1074,
    ]
    powers = 10.0 ** np.arange(-323, 309)
    return np.concatenate([a, tiny, -tiny, special, powers, -powers, np.round(a[:1000] % 1e6)])


def test_float_text_round_trips_bit_for_bit_through_json_and_the_reader():
    import io

    from normstat.numtext import ArrayReader, dump_array

    a = _edge_floats(300_000, 7)
    out = io.StringIO()
    dump_array(a, out)
    text = out.getvalue()
    _same_as_json_reads(text, a)  # the standard library reads the same floats
    reader = ArrayReader(io.BytesIO(text.encode()), "mean", "p")
    got = reader.take(a.size + 1)
    finite = np.isfinite(a)
    assert got.size == a.size and np.isnan(got[~finite]).all()
    assert np.array_equal(got[finite].view(np.uint64), a[finite].view(np.uint64))
    float32 = a[finite & (np.abs(a) < 3e38)].astype(np.float32)
    out = io.StringIO()
    dump_array(float32, out)  # float32 statistics: written as the float64 they widen to
    _same_as_json_reads(out.getvalue(), float32.astype(np.float64))


def test_the_reader_reads_what_json_reads_in_other_spellings():
    """Old files and hand-written ones: exponents, signs, blanks and newlines anywhere between
    values, nesting; every one read as ``json`` reads it."""
    import io

    from normstat.numtext import ArrayReader

    text = "[[1, -0.0, 1E5, 1e+5, 1.5e-07 ,\n 2.5E-3], [null,  0 ,-7, 1e-400, 123456789012345678]]"
    got = ArrayReader(io.BytesIO(text.encode()), "k", "p").take(100)
    want = np.array([np.nan if v is None else v for v in _leaves(json.loads(text), [])], float)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.signbit(got[1]) and got[9] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "[1 2]",
        "[1, 2 3]",
        "[[1] [2]]",
        "[1,,2]",
        "[1, NaN]",
        "[nan]",
        "[inf]",
        "[-Infinity]",
        '[1, "2"]',
        "[1, {}]",
        "[1e999]",
        "[-1e400]",
        "[1, nul]",
        "[1, nulll]",
        "[0x10]",
        "[1, 2,]",
        "[,1]",
        "[1e]",
        "[1.0\u00e9]",
        "[true]",
        "[1 e5]",
        "[-null]",
        "[+null]",
        "[1, nullnull]",
        "[1, null 2]",
        "[null1]",
        "[.nul]",
        "[\u00a01]",
    ],
)
def test_the_reader_refuses_what_is_not_a_json_number_array(text):
    import io

    from normstat.numtext import ArrayReader

    with pytest.raises(ArtifactError, match="'k'"):
        ArrayReader(io.BytesIO(text.encode()), "k", "p").take(100)


def test_reading_in_tiny_pieces_gives_the_strict_readers_floats(wide, monkeypatch):
    from normstat import numtext

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


def test_many_groups_written_in_blocks_read_as_json_reads_them(tmp_path):
    """``--by`` with thousands of groups: the per-group arrays are written by the block writer;
    ``json`` reads the file to what ``to_dict`` gives, value for value, and ``load`` reads the
    same statistics back."""
    import pandas as pd

    rng = np.random.default_rng(8)
    n = 20_000
    df = pd.DataFrame(
        {
            "episode_index": np.repeat(np.arange(5_000), 4),
            "w": rng.uniform(0.5, 2.0, n),
            **{f"c{i}": rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30) for i in range(4)},
        }
    )
    df.loc[::7, "c1"] = np.nan
    data = tmp_path / "d.parquet"
    df.to_parquet(data)
    stats = normstat.fit(str(data), by="episode_index", weights="w")
    path = tmp_path / "s.json"
    artifact.save(stats, str(path))
    doc = json.loads(path.read_text())
    want = json.loads(json.dumps(artifact.to_dict(stats)))
    assert doc.keys() == want.keys()
    for key in ("by", "weights"):
        assert doc[key].keys() == want[key].keys()
        for k, v in want[key].items():
            if isinstance(v, list):
                got, ref = _leaves(doc[key][k], []), _leaves(v, [])
                assert [type(x) for x in got] == [type(x) for x in ref], (key, k)
                assert np.array_equal(np.array(got, float), np.array(ref, float), equal_nan=True)
                assert np.shape(doc[key][k]) == np.shape(v)
            else:
                assert doc[key][k] == v
    back = artifact.to_dict(artifact.load(str(path)))
    back["created"] = want["created"]  # when each was made: seconds apart
    assert json.dumps(back, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_wide_json_text_is_written_and_read_without_pandas(tmp_path):
    """pyarrow's ``pa.array``, ``pa.scalar`` and ``to_numpy`` import pandas (0.13 s and more of
    a command's start); the number text goes through Arrow buffers instead. Checked in a fresh
    process: a wide artifact's fit, write and read leave pandas unimported, and read back the
    same values."""
    import subprocess
    import sys

    code = f"""
import sys, numpy as np, normstat
from normstat import artifact
x = np.random.default_rng(0).normal(size=(3, 40_000))
x[:, 5] = np.nan  # a feature without values: null statistics in the text
stats = normstat.fit_arrays(x, nan="skip")
artifact.save(stats, {str(tmp_path / "w.json")!r})
back = artifact.load({str(tmp_path / "w.json")!r})
assert np.array_equal(back.mean, stats.mean, equal_nan=True)
assert np.array_equal(back.m2, stats.m2, equal_nan=True)
print("pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
