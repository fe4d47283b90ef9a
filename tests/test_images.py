"""Image sources against independent references: Pillow decodes, numpy sums in int64 / float64.

Folders, globs and lists of files, WebDataset tar shards, mixed sizes and modes, real photographs
(scikit-learn's sample images), the digits rendered as an ImageFolder (equal to the HDF5 fit),
torchvision's Resize / CenterCrop arithmetic, --skip-bad, 16-bit PNGs and --rescale.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DIGITS, CrashAfter
from PIL import Image

import normstat
from normstat import artifact
from normstat.cli import main
from normstat.errors import ArtifactError, DataError, NormstatWarning
from normstat.sources import _braces
from normstat.sources.images import Decoding, crop_offsets, resized_size


def run(*args: object, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def exact_reference(paths: list[Path], mode: str = "RGB") -> dict[str, np.ndarray]:
    """Pooled per-channel statistics from integer sums (exact), every pixel of every image."""
    sums = sq = None
    n = 0
    lo, hi = np.full(4, 10**9), np.full(4, -1)
    for p in paths:
        with Image.open(p) as im:
            x = np.asarray(im.convert(mode)).reshape(-1, len(mode) if mode != "L" else 1)
        x = x.astype(np.int64)
        s, q = x.sum(0), (x * x).sum(0)
        sums, sq = (s, q) if sums is None else (sums + s, sq + q)
        n += x.shape[0]
        lo[: x.shape[1]] = np.minimum(lo[: x.shape[1]], x.min(0))
        hi[: x.shape[1]] = np.maximum(hi[: x.shape[1]], x.max(0))
    assert sums is not None and sq is not None
    c = len(sums)
    mean = [Fraction(int(v), n) for v in sums]
    m2 = [Fraction(int(q)) - Fraction(int(s)) ** 2 / n for s, q in zip(sums, sq, strict=True)]
    return {
        "count": np.full(c, n),
        "mean": np.array([float(v) for v in mean]),
        "m2": np.array([float(v) for v in m2]),
        "min": lo[:c].astype(float),
        "max": hi[:c].astype(float),
    }


def check(stats: normstat.Stats, ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(stats.count, ref["count"])
    np.testing.assert_allclose(stats.mean, ref["mean"], rtol=1e-14, atol=0)
    np.testing.assert_allclose(stats.m2, ref["m2"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(stats.min, ref["min"])
    np.testing.assert_array_equal(stats.max, ref["max"])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """An ImageFolder of JPEG and PNG files of mixed sizes and modes (RGB, L, RGBA, P), with a
    hidden file and an ``_``-prefixed folder that are not data."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(17)
    paths = []
    for i in range(12):
        cls = root / ("bird" if i % 3 == 0 else "cat" if i % 3 == 1 else "dog")
        cls.mkdir(exist_ok=True)
        h, w = int(rng.integers(9, 40)), int(rng.integers(9, 40))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mode = ("RGB", "L", "RGBA", "P")[i % 4]
        im = Image.fromarray(rgb)
        if mode == "L":
            im = im.convert("L")
        elif mode == "RGBA":
            im = Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (h, w), dtype=np.uint8)]))
        elif mode == "P":
            im = im.convert("P")
        suffix = ".png" if mode in ("RGBA", "P") or i % 2 else ".jpg"
        path = cls / f"img{i:02d}{suffix}"
        im.save(path)
        paths.append(path)
    (root / ".hidden.jpg").write_bytes(b"not an image")
    (root / "_cache").mkdir()
    (root / "_cache" / "x.jpg").write_bytes(b"not an image")
    return root, sorted(paths)


@pytest.mark.parametrize("workers", [1, 2])
def test_folder_pools_every_pixel_exactly(mixed, workers):
    root, paths = mixed
    stats = normstat.fit(str(root), workers=workers)
    check(stats, exact_reference(paths))
    assert stats.source["samples"] == "images" and stats.source["images"] == len(paths)
    assert stats.source["shape"][1:] == [None, None, 3] and stats.source["skipped"] == []


def test_glob_and_file_list_equal_the_folder(mixed):
    root, paths = mixed
    whole = normstat.fit(str(root), workers=1)
    by_glob = normstat.fit(str(root / "**" / "*.png"), workers=1)
    check(by_glob, exact_reference([p for p in paths if p.suffix == ".png"]))
    listed = normstat.fit([str(p) for p in paths], workers=1)
    np.testing.assert_array_equal(listed.m2, whole.m2)


def test_not_an_average_of_per_image_statistics(mixed):
    """The pitfall the docs show: images of different sizes weigh by their pixels."""
    root, paths = mixed
    stats = normstat.fit(str(root), workers=1)
    per_image = [np.asarray(Image.open(p).convert("RGB"), np.float64) for p in paths]
    average = np.mean([x.reshape(-1, 3).mean(0) for x in per_image], axis=0)
    assert np.abs(stats.mean - average).max() > 0.1


def test_sklearn_sample_photographs():
    datasets = pytest.importorskip("sklearn.datasets")
    files = [Path(f) for f in datasets.load_sample_images().filenames]
    assert len(files) == 2 and all(f.suffix == ".jpg" for f in files)
    stats = normstat.fit([str(f) for f in files], workers=2)
    check(stats, exact_reference(files))
    grey = normstat.fit([str(f) for f in files], workers=1, options={"mode": "L"})
    check(grey, exact_reference(files, "L"))


def test_digits_as_an_image_folder_equal_the_hdf5_fit(tmp_path):
    with h5py.File(DIGITS, "r") as f:
        images, labels = f["images"][...], f["labels"][...]
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "digits" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    folder_stats = normstat.fit(str(tmp_path / "digits"), axis=[1, 2], options={"mode": "L"})
    h5_stats = normstat.fit(f"{DIGITS}:/images", axis=[1, 2])
    assert folder_stats.feature_shape == h5_stats.feature_shape == (8, 8)
    np.testing.assert_array_equal(folder_stats.count, h5_stats.count)
    np.testing.assert_allclose(folder_stats.mean, h5_stats.mean, rtol=1e-14)
    np.testing.assert_allclose(folder_stats.m2, h5_stats.m2, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(folder_stats.max, h5_stats.max)

    out = tmp_path / "digits-std.h5"
    run("apply", _save(h5_stats, tmp_path), tmp_path / "digits", "--mode", "L", "-o", out, "-q")
    order = np.lexsort((np.arange(len(labels)), labels))  # the folder's order: class, then name
    expected = normstat.transform(images[order], h5_stats)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data"][...][..., 0], expected)
        np.testing.assert_array_equal(f["labels"][...], labels[order])
        assert list(f["labels"].attrs["classes"]) == [str(c) for c in range(10)]


def _save(stats: normstat.Stats, where: Path, name: str = "stats.json") -> Path:
    path = where / name
    artifact.save(stats, str(path))
    return path


def test_torchvision_resize_and_center_crop_arithmetic():
    assert resized_size(375, 500, 256) == (256, 341)  # landscape: height is the short side
    assert resized_size(500, 375, 256) == (341, 256)
    assert resized_size(32, 32, 224) == (224, 224)
    assert resized_size(100, 299, 50) == (50, 149)  # int() truncates 149.5
    assert crop_offsets(256, 341, 224, 224) == (16, 58)  # round(58.5) is 58, as torchvision
    assert crop_offsets(341, 256, 224, 224) == (58, 16)
    assert crop_offsets(255, 255, 224, 224) == (16, 16)  # round(15.5) is 16


def test_resize_and_crop_equal_pillow_directly(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(path)
    got = Decoding("RGB", 256, (224, 224))(str(path))
    with Image.open(path) as im:
        resized = im.convert("RGB").resize((341, 256), Image.Resampling.BILINEAR)
        want = np.asarray(resized.crop((58, 16, 58 + 224, 16 + 224)))
    np.testing.assert_array_equal(got, want)
    small = Decoding("L", None, (12, 10))(_png(tmp_path / "small.png", (7, 9)))
    assert small.shape == (12, 10, 1) and small[:2].max() == 0  # padded as CenterCrop pads


def _png(path: Path, shape: tuple[int, int]) -> str:
    Image.fromarray(np.full(shape, 200, np.uint8)).save(path)
    return str(path)


def test_per_position_needs_one_size(mixed):
    root, paths = mixed
    result = run("fit", root, "--axis", "1", "--axis", "2", "--workers", "1", ok=False)
    assert result.exit_code == 1
    assert "differs from the first image's" in result.output and "--resize" in result.output
    assert str(paths[1]) in result.output or any(str(p) in result.output for p in paths[1:])
    stats = normstat.fit(
        str(root), axis=[1, 2, 3], workers=2, options={"resize": 16, "center_crop": (16, 12)}
    )
    assert stats.feature_shape == (16, 12, 3)
    stack = np.stack([Decoding("RGB", 16, (16, 12))(str(p)) for p in paths]).astype(np.float64)
    np.testing.assert_allclose(stats.mean, stack.mean(0), rtol=1e-14)
    np.testing.assert_allclose(stats.var, stack.var(0), rtol=1e-12)


def test_tar_shards_with_brace_ranges_equal_the_folder(mixed, tmp_path):
    root, paths = mixed
    for s in range(3):
        with tarfile.open(tmp_path / f"shards-{s:03d}.tar", "w") as tar:
            for i, p in enumerate(paths[s * 4 : (s + 1) * 4]):
                tar.add(p, arcname=f"sample{s}{i:03d}{p.suffix}")
                info = tarfile.TarInfo(f"sample{s}{i:03d}.cls")
                info.size = 1
                tar.addfile(info, io.BytesIO(b"3"))
    spec = str(tmp_path / "shards-{000..002}.tar")
    stats = normstat.fit(spec, workers=2)
    check(stats, exact_reference(paths))
    assert stats.source["images"] == len(paths) and len(stats.source["paths"]) == 3
    assert _braces("a-{8..10}.tar") == ["a-8.tar", "a-9.tar", "a-10.tar"]
    assert _braces("s{00..2}/{a,b}") == ["s00/a", "s00/b", "s01/a", "s01/b", "s02/a", "s02/b"]
    saved = _save(stats, tmp_path)
    run("apply", saved, spec, "--resize", "8", "--center-crop", "8", "8", "-o", tmp_path / "o.h5")
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert f["data"].shape == (12, 8, 8, 3)
        np.testing.assert_array_equal(f["labels"][...], [3] * 12)  # from the .cls members
    missing = run("fit", str(tmp_path / "shards-{000..003}.tar"), ok=False)
    assert missing.exit_code == 1 and "shards-003.tar" in missing.output


def _shards(paths: list[Path], where: Path, per: int, gz: bool = False) -> str:
    """The images as tar shards of ``per`` images (with ``.cls`` and ``.json`` members that are
    not pixels), named ``shard-000.tar`` ...; returns the brace spec."""
    n = -(-len(paths) // per)
    for s in range(n):
        name = where / f"shard-{s:03d}.tar"  # gzipped or not: tar reads either
        with tarfile.open(name, "w:gz" if gz else "w") as tar:
            for i, p in enumerate(paths[s * per : (s + 1) * per]):
                tar.add(p, arcname=f"k{s}{i:03d}{p.suffix}")
                for ext, data in (("cls", b"1"), ("json", b"{}")):
                    info = tarfile.TarInfo(f"k{s}{i:03d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(where / f"shard-{{000..{n - 1:03d}}}.tar")


def test_tar_shards_are_counted_from_headers_and_read_from_any_image(mixed, tmp_path, monkeypatch):
    """Uncompressed local shards are numbered up front; reading from image k yields what a
    read from the start yields from k on (whole shards before it are not opened, members
    before it in its shard are passed over unread); compressed shards stay streamed."""
    from normstat.sources import open_sources
    from normstat.sources.reading import ImageOptions

    _, paths = mixed
    spec = _shards(paths, tmp_path, 5)
    (src,) = open_sources([spec], images=ImageOptions(workers=1))
    assert src.shape[0] == len(paths) and src.local_only is None
    every = list(src._items(0))
    assert [w.rsplit(":", 1)[1] for w, _ in every] == [
        f"k{i // 5}{i % 5:03d}{p.suffix}" for i, p in enumerate(paths)
    ]
    for k in (1, 4, 5, 6, 11):
        assert list(src._items(k)) == every[k:], k
    from normstat.sources import webdataset

    counted = []
    real_count = webdataset._count_members
    monkeypatch.setattr(webdataset, "_count_members", lambda p: counted.append(p) or real_count(p))
    task = src.reference().open()  # what a Dask task opens: the counts travel with it
    assert counted == [] and task.shape[0] == len(paths) and list(task._items(7)) == every[7:]
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    (gz,) = open_sources([_shards(paths, gz_dir, 5, gz=True)], images=ImageOptions(workers=1))
    assert gz.shape[0] is None and "compressed or remote" in (gz.local_only or "")
    assert list(gz._items(6)) == [(w.replace("/shard", "/gz/shard"), d) for w, d in every[6:]]


@pytest.fixture(scope="module")
def threads_cluster():
    """A Dask cluster of threads in this process: the tasks and merges of a process cluster,
    started in a fraction of the time."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c


def test_tar_shards_on_dask_equal_the_local_fit_bit_for_bit(mixed, tmp_path, threads_cluster):
    _, paths = mixed
    spec = _shards(paths, tmp_path, 5)  # tasks of 3 images start inside shards
    local = normstat.fit(spec, workers=1, chunk_size=2)
    dask = normstat.fit(spec, engine="dask", scheduler=threads_cluster.scheduler_address,
                        task_size=3, chunk_size=2)  # fmt: skip
    assert np.array_equal(local.mean, dask.mean) and np.array_equal(local.var, dask.var)
    assert np.array_equal(local.min, dask.min) and np.array_equal(local.max, dask.max)
    check(dask, exact_reference(paths))
    assert dask.source["images"] == len(paths)
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    result = run("fit", _shards(paths, gz_dir, 5, gz=True), "--engine", "dask", ok=False)
    assert result.exit_code == 2 and "compressed or remote tar files are streamed" in result.output


def test_bad_file_is_named_or_skipped_and_recorded(mixed, tmp_path):
    root, paths = mixed
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in paths[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    good = next(p for p in paths if p.suffix == ".jpg").read_bytes()
    bad = folder / "zz-corrupt.jpg"
    bad.write_bytes(good[: len(good) // 3])  # a truncated JPEG
    result = run("fit", folder, "--workers", "2", ok=False)
    assert result.exit_code == 1 and "zz-corrupt.jpg" in result.output
    assert "Traceback" not in result.output
    out = tmp_path / "s.json"
    run("fit", folder, "--skip-bad", "--workers", "2", "-o", out, "-q")
    saved = json.loads(out.read_text())
    assert saved["source"]["skipped"] == [str(bad)] and saved["source"]["images"] == 4
    check(artifact.load(str(out)), exact_reference(sorted(folder.glob("img*"))))


def test_skip_bad_on_dask_skips_and_records_as_the_local_fit(mixed, tmp_path, threads_cluster):
    """Each task reports what it read and skipped; joined in data order, the record is the
    local one, and the statistics are the local ones bit for bit."""
    root, paths = mixed
    folder = tmp_path / "photos"
    good = sorted(p for p in paths if p.suffix == ".jpg")
    for p in paths:
        (folder / p.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / p.parent.name / p.name).write_bytes(p.read_bytes())
    bad = [folder / "bird" / "a-truncated.jpg", folder / "dog" / "zz-empty.png"]
    bad[0].write_bytes(good[0].read_bytes()[:200])
    bad[1].write_bytes(b"")
    kw = {"options": {"skip_bad": True}, "chunk_size": 2}
    with pytest.warns(NormstatWarning, match="skipped 2 image"):
        local = normstat.fit(str(folder), workers=1, **kw)
    with pytest.warns(NormstatWarning, match="skipped 2 image"):
        dask = normstat.fit(str(folder), engine="dask", task_size=3,
                            scheduler=threads_cluster.scheduler_address, **kw)  # fmt: skip
    assert np.array_equal(local.mean, dask.mean) and np.array_equal(local.var, dask.var)
    check(dask, exact_reference(paths))
    assert dask.source == local.source
    assert dask.source["skipped"] == [str(b) for b in bad] and dask.source["images"] == len(paths)
    with pytest.raises(DataError, match="a-truncated.jpg"):
        normstat.fit(str(folder), engine="dask", task_size=3, chunk_size=2,
                     scheduler=threads_cluster.scheduler_address)  # fmt: skip
    # apply: the bad images are found first, and each task is told which to leave out, so a
    # task's rows land where the local apply writes them (tasks of 3 rows, output-numbered)
    sized = {"options": {"skip_bad": True, "resize": 8, "center_crop": (8, 8)}, "chunk_size": 2}
    with pytest.warns(NormstatWarning, match="skipped 2 image"):
        normstat.apply(local, str(folder), str(tmp_path / "local.npy"), workers=1, **sized)
    with pytest.warns(NormstatWarning, match="skipped 2 image"):
        cluster = {"engine": "dask", "scheduler": threads_cluster.scheduler_address}
        normstat.apply(
            local, str(folder), str(tmp_path / "dask.npy"), task_size=3, **cluster, **sized
        )
    want = np.load(tmp_path / "local.npy")
    assert want.shape == (len(paths), 8, 8, 3)
    assert np.array_equal(np.load(tmp_path / "dask.npy"), want)
    kept = sorted(p for p in folder.rglob("*") if p.is_file() and p not in bad)
    x = np.stack([Decoding("RGB", 8, (8, 8))(str(p)) for p in kept]).astype(np.float64)
    np.testing.assert_allclose(want, (x - local.mean) / local.std, rtol=1e-5, atol=1e-5)


def test_sixteen_bit_png_kept_or_refused(tmp_path):
    x = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000).astype(np.uint16)
    Image.fromarray(x).save(tmp_path / "deep.png")
    result = run("fit", tmp_path, "--workers", "1", ok=False)
    assert result.exit_code == 1 and "16-bit" in result.output and "I;16" in result.output
    stats = normstat.fit(str(tmp_path), workers=1, options={"mode": "I;16"})
    assert stats.source["dtype"] == "uint16" and stats.max[0] == 59000.0
    np.testing.assert_allclose(stats.var, [x.astype(np.float64).var()], rtol=1e-14)


def test_rescale_for_images_and_arrays(mixed, tmp_path, digits):
    root, paths = mixed
    plain = normstat.fit(str(root), workers=1)
    scaled = normstat.fit(str(root), workers=1, rescale="1/255")
    pixels = np.concatenate(
        [np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3) for p in paths]
    ).astype(np.float64)
    np.testing.assert_allclose(scaled.mean, (pixels / 255).mean(0), rtol=1e-13)
    np.testing.assert_allclose(scaled.std, (pixels / 255).std(0), rtol=1e-13)
    np.testing.assert_allclose(scaled.max, [1.0, 1.0, 1.0])
    assert scaled.rescale == 1 / 255 and plain.rescale == 1.0
    torch = normstat.export(scaled, "torch")
    assert all(0 < m < 1 for m in torch["mean"]) and all(0 < s < 0.5 for s in torch["std"])

    h5 = normstat.fit(f"{DIGITS}:/images", axis=None, rescale=0.5)
    np.testing.assert_allclose(h5.mean, digits.mean() * 0.5, rtol=1e-13)
    path = _save(h5, tmp_path, "half.json")
    assert json.loads(path.read_text())["rescale"] == 0.5
    loaded = artifact.load(str(path))
    assert loaded.rescale == 0.5
    y = normstat.transform(digits, loaded, dtype=np.float64)
    expected = (digits * 0.5 - digits.mean() * 0.5) / (digits.std() * 0.5)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    back = normstat.transform(y, loaded, inverse=True, dtype=np.float64)
    np.testing.assert_allclose(back, digits, atol=1e-9)
    with pytest.raises(ArtifactError, match="rescale"):
        normstat.merge([h5, normstat.fit(f"{DIGITS}:/images", axis=None)], allow_overlap=True)
    bad = run("fit", DIGITS, "--rescale", "1/0", ok=False)
    assert bad.exit_code == 2 and "--rescale" in bad.output


def test_image_options_refused_for_other_formats():
    result = run("fit", DIGITS, "--mode", "L", ok=False)
    assert result.exit_code == 2 and "images" in result.output


def test_apply_mixed_sizes_is_a_clear_error(mixed, tmp_path):
    root, _ = mixed
    stats = _save(normstat.fit(str(root), workers=1), tmp_path)
    result = run("apply", stats, root, "-o", tmp_path / "out.npy", ok=False)
    assert result.exit_code == 1 and "--resize" in result.output
    assert not (tmp_path / "out.npy").exists()
    run("apply", stats, root, "--resize", "8", "--center-crop", "8", "8", "-o", tmp_path / "o.npy")
    assert np.load(tmp_path / "o.npy").shape == (12, 8, 8, 3)


def test_no_decodable_image_is_a_data_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="a.jpg"):
        normstat.fit(str(tmp_path), workers=1)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_image_column_binary_and_hugging_face_struct(mixed, tmp_path, suffix):
    pa = pytest.importorskip("pyarrow")
    root, paths = mixed
    data = [p.read_bytes() for p in paths]
    hf = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array(
                [{"bytes": d, "path": p.name} for d, p in zip(data, paths, strict=True)], hf
            ),
            "raw": pa.array(data, pa.binary()),
            "label": list(range(len(data))),
        }
    )
    path = tmp_path / f"images{suffix}"
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=5)
    else:
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=5)
    for column in ("image", "raw"):
        stats = normstat.fit(str(path), columns=[column], workers=2)
        check(stats, exact_reference(paths))
        assert stats.source["images"] == len(paths)
    numeric = normstat.fit(str(path), columns=["label"])
    assert numeric.features == ["label"]


def test_dask_is_refused_where_the_record_needs_the_reader_and_apply_streams_npy(mixed, tmp_path):
    root, paths = mixed
    stats = _save(normstat.fit(str(root), workers=1, rescale="1/255"), tmp_path)
    result = run("apply", stats, root, "--engine", "dask", "-o", "-", ok=False)
    assert result.exit_code == 2 and "-o - streams rows in order" in result.output
    out = run("apply", stats, root, "--resize", "8", "--center-crop", "8", "8", "-o", "-")
    y = np.load(io.BytesIO(out.stdout_bytes))
    loaded = artifact.load(str(stats))
    x = np.stack([Decoding("RGB", 8, (8, 8))(str(p)) for p in paths]) / 255
    np.testing.assert_allclose(y, (x - loaded.mean) / loaded.std, rtol=1e-5, atol=1e-5)


def test_labels_number_folders_as_image_folder_does(tmp_path):
    root = tmp_path / "train"
    for name in ("b_cls", "a_cls", "empty", ".git", "_tmp"):
        (root / name).mkdir(parents=True)
    _png(root / "b_cls" / "1.png", (4, 4))
    _png(root / "a_cls" / "2.png", (4, 4))
    _png(root / "a_cls" / "3.png", (4, 4))
    stats = _save(normstat.fit(str(root), workers=1), tmp_path)
    run("apply", stats, root, "-o", tmp_path / "out.h5", "-q")
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert list(f["labels"].attrs["classes"]) == ["a_cls", "b_cls", "empty"]
        np.testing.assert_array_equal(f["labels"][...], [0, 0, 1])
        assert f["data"].shape == (3, 4, 4, 3)


def test_pixel_chunks_are_of_one_size_and_name_the_image_that_is_not(tmp_path):
    from normstat.sources import ImageOptions, open_sources

    _png(tmp_path / "a.png", (4, 4))
    for i in range(5):
        _png(tmp_path / f"b{i}.png", (40, 40))
    (src,) = open_sources([str(tmp_path)], images=ImageOptions(workers=1))
    with pytest.raises(DataError, match="differs from the first image's") as info:
        list(src.chunks(200))
    assert info.value.path.endswith("b0.png")


def test_a_fit_gets_moments_from_the_decoding_processes_not_pixels(tmp_path):
    """reduced_chunks: each batch reduced where it was decoded, the same chunks (and so the
    same merge, bit for bit) whatever the number of processes, equal to the exact sums."""
    from normstat.core.layout import AxisLayout
    from normstat.engine.task import FitStep
    from normstat.sources import ImageOptions, open_sources
    from normstat.sources.images import BATCH_FILES

    rng = np.random.default_rng(5)
    arrays = []
    for i in range(BATCH_FILES + 3):
        a = rng.integers(0, 256, (3 + i % 4, 5 + i % 3, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / f"{i:02d}.png")
        arrays.append(a.reshape(-1, 3).astype(np.int64))
    results = []
    for workers in (1, 2):
        (src,) = open_sources([str(tmp_path)], images=ImageOptions(workers=workers))
        step = FitStep(AxisLayout.create(-1, src.shape), "skip")
        chunks = list(src.reduced_chunks(src.preferred_rows(2**25), step))
        assert [c.rows for c in chunks] == [BATCH_FILES, 3]
        assert all(c.moments is not None and c.columns is None for c in chunks)
        results.append(step.merge([c.moments for c in chunks]))
    a, b = results
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.m2, b.m2)
    allpix = np.concatenate(arrays)
    n = len(allpix)
    exact_mean = [Fraction(int(v), n) for v in allpix.sum(0)]
    exact_m2 = [Fraction(int((allpix[:, c] ** 2).sum())) - n * exact_mean[c] ** 2 for c in range(3)]
    assert np.array_equal(a.count, [n] * 3)
    np.testing.assert_allclose(a.mean, [float(m) for m in exact_mean], rtol=1e-15)
    np.testing.assert_allclose(a.m2, [float(m) for m in exact_m2], rtol=1e-13)


def test_show_names_varying_sizes_and_the_rescale(mixed, tmp_path):
    root, _ = mixed
    stats = _save(normstat.fit(str(root), workers=1, rescale="1/255"), tmp_path)
    out = run("show", stats).output
    assert "rescale 1/255" in out and "[12, *, *, 3] uint8" in out


def test_a_table_folder_ignores_stray_images(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), tmp_path / "part-0.parquet")
    _png(tmp_path / "README.png", (4, 4))
    stats = normstat.fit(str(tmp_path))
    assert stats.features == ["x"] and stats.mean[0] == 2.0


def test_workers_start_from_a_fork_server_when_threads_run(mixed):
    """Forking a process that runs threads is unsafe: then the workers come from a fork server."""
    import threading

    root, paths = mixed
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        stats = normstat.fit(str(root), workers=2)
    finally:
        stop.set()
        other.join()
    check(stats, exact_reference(paths))


def _jpegs(tmp_path: Path) -> list[Path]:
    """JPEGs of every kind the fast decoder may meet: chroma subsamplings, progressive, grey,
    CMYK (left to Pillow), odd sizes, and scikit-learn's two photographs."""
    rng = np.random.default_rng(11)
    out = []
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).resize((101, 67))
    )
    for i, kw in enumerate(
        [
            {"subsampling": 0},
            {"subsampling": 1},
            {"subsampling": 2},
            {"subsampling": 2, "progressive": True},
            {"quality": 40, "optimize": True},
        ]
    ):
        p = tmp_path / f"rgb{i}.jpg"
        Image.fromarray(smooth).save(p, quality=kw.pop("quality", 90), **kw)
        out.append(p)
    Image.fromarray(smooth[:, :, 0]).save(tmp_path / "grey.jpg", quality=85)
    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=85)
    out += [tmp_path / "grey.jpg", tmp_path / "cmyk.jpg"]
    sklearn = pytest.importorskip("sklearn.datasets")
    for k, photo in enumerate(sklearn.load_sample_images().images):
        p = tmp_path / f"photo{k}.jpg"
        Image.fromarray(photo).save(p, quality=95)
        out.append(p)
    return out


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_simplejpeg_gives_pillows_very_pixels(tmp_path, mode):
    pytest.importorskip("simplejpeg")
    from normstat.sources.images import turbo_decode

    used = 0
    for p in _jpegs(tmp_path):
        pillow = Decoding(mode)(str(p))
        fast = Decoding(mode, turbo=True)(str(p))
        assert fast.dtype == pillow.dtype and np.array_equal(fast, pillow), p.name
        used += turbo_decode(p.read_bytes(), mode) is not None
    # RGB: every JPEG but the CMYK one; L: only the grey JPEG (Pillow makes L from RGB)
    assert used == (8 if mode == "RGB" else 1)


def test_fit_with_simplejpeg_equals_the_pillow_reference(tmp_path, monkeypatch):
    pytest.importorskip("simplejpeg")
    from normstat.sources import images

    paths = _jpegs(tmp_path)
    pix = np.concatenate(
        [np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3).astype(np.int64) for p in paths]
    )
    fast = normstat.fit([str(p) for p in paths], workers=2)
    monkeypatch.setattr(images, "turbo_available", lambda: False)
    slow = normstat.fit([str(p) for p in paths], workers=1)
    assert np.array_equal(fast.mean, slow.mean) and np.array_equal(fast.var, slow.var)
    n = len(pix)
    np.testing.assert_allclose(fast.mean, pix.sum(0) / n, rtol=1e-15)
    want_var = [
        float(Fraction(int((c**2).sum()), n) - Fraction(int(c.sum()), n) ** 2) for c in pix.T
    ]
    np.testing.assert_allclose(fast.var, want_var, rtol=1e-13)


def test_jpegs_decoded_in_place_into_the_batch_buffer_reduce_to_the_reference(tmp_path):
    """A batch decoded straight into its buffer: JPEGs of the first JPEG's shape go in place,
    a PNG, a JPEG of another size, a damaged JPEG and a CMYK one (Pillow's) do not; the
    reduction equals integer sums of Pillow's pixels, and the ring's buffers are reused."""
    pytest.importorskip("simplejpeg")
    from normstat.core.layout import AxisLayout
    from normstat.engine.task import FitStep
    from normstat.sources.images import Stacks, decode_batch, reduce_decoded

    rng = np.random.default_rng(3)
    smooth = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize((30, 20))
    specs = ["a.jpg", "b.jpg", "c.png", "small.jpg", "bad.jpg", "cmyk.jpg", "d.jpg", "e.jpg"]
    for name in specs:
        im = smooth.resize((13, 11)) if name == "small.jpg" else smooth
        im = im.convert("CMYK") if name == "cmyk.jpg" else im
        im.save(tmp_path / name, quality=80 + len(name))
    (tmp_path / "bad.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:300])
    batch = [(n, str(tmp_path / n)) for n in specs]
    decoding = Decoding("RGB", turbo=True)
    stacks = Stacks(depth=2)
    decoded = decode_batch(decoding, batch, stacks)
    assert decoded.placed == {0, 1, 6, 7} and decoded.stack is not None
    assert isinstance(decoded[4][1], str)  # the damaged file: its error, named by the batch
    step = FitStep(AxisLayout.create(-1, (0, 20, 30, 3)))
    reduced = reduce_decoded(decoded, step, 0)
    good = [p for n, p in batch if n != "bad.jpg"]
    pix = np.concatenate(
        [np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3).astype(np.int64) for p in good]
    )
    m = reduced.value
    assert reduced.count == 7 and m.count.tolist() == [len(pix)] * 3
    np.testing.assert_allclose(m.mean, pix.sum(0) / len(pix), rtol=1e-15)
    m2 = [
        float(Fraction(int((c**2).sum())) - Fraction(int(c.sum())) ** 2 / len(pix)) for c in pix.T
    ]
    np.testing.assert_allclose(m.m2, m2, rtol=1e-13)
    np.testing.assert_array_equal(m.min, pix.min(0))
    np.testing.assert_array_equal(m.max, pix.max(0))
    first = decoded.stack
    again = [decode_batch(decoding, batch, stacks).stack for _ in range(2)]
    assert again[1] is first and again[0] is not first  # a ring of two, reused
    for k in range(2):  # grey JPEGs decoded in place as L: (h, w, 1), Pillow's pixels
        smooth.convert("L").rotate(90 * k).save(tmp_path / f"grey{k}.jpg", quality=90)
    greys = [(f"grey{k}.jpg", str(tmp_path / f"grey{k}.jpg")) for k in range(2)]
    grey = decode_batch(Decoding("L", turbo=True), greys, Stacks())
    assert grey.placed == {0, 1} and grey.stack is not None and grey.stack.shape[1:] == (20, 30, 1)
    for (_, p), (_, pixels) in zip(greys, grey, strict=True):
        assert np.array_equal(pixels[:, :, 0], np.asarray(Image.open(p).convert("L")))


@pytest.mark.parametrize("hugging_face", [True, False])
def test_image_column_labels_go_with_apply(mixed, tmp_path, hugging_face):
    """A Hugging Face ``Image()`` + ``ClassLabel`` table (the schema metadata ``datasets``
    writes) gives ``/labels`` and the class names; a plain integer ``label`` column, labels."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root, paths = mixed
    names = ["bird", "cat", "dog"]
    labels = [i % 3 for i in range(len(paths))]
    hf = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": p.read_bytes(), "path": None} for p in paths], hf),
            "label": pa.array(labels, pa.int64()),
        }
    )
    if hugging_face:
        meta = {
            "info": {
                "features": {
                    "image": {"_type": "Image"},
                    "label": {"names": names, "_type": "ClassLabel"},
                }
            }
        }
        table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=4)
    stats = _save(
        normstat.fit(str(tmp_path / "train.parquet"), columns=["image"], workers=1), tmp_path
    )
    out = tmp_path / "out.h5"
    run(
        "apply",
        stats,
        tmp_path / "train.parquet",
        "--columns",
        "image",
        "--resize",
        "8",
        "--center-crop",
        "8",
        "8",
        "-o",
        out,
        "-q",
    )
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["labels"][...], labels)
        assert list(f["labels"].attrs.get("classes", [])) == (names if hugging_face else [])
        assert f[next(k for k in f if k != "labels" and k != "normstat")].shape[0] == len(paths)


@pytest.mark.parametrize("workers", [1, 2])
def test_checkpoint_resume_equals_the_uninterrupted_fit_and_its_record(tmp_path, workers):
    rng = np.random.default_rng(3)
    root = tmp_path / "imgs"
    root.mkdir()
    pixels = []
    for i in range(30):
        if i in (5, 23):  # one bad file before the crash, one after
            (root / f"{i:02d}.png").write_bytes(b"not a png")
            continue
        a = rng.integers(0, 256, (4 + i % 3, 6, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / f"{i:02d}.png")
        pixels.append(a.reshape(-1, 3).astype(np.int64))
    kw = {"workers": workers, "options": {"skip_bad": True}}
    whole = normstat.fit(str(root), **kw)
    state = str(tmp_path / "state.npz")
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            str(root), checkpoint=state, checkpoint_every=1e-9, progress=CrashAfter(17), **kw
        )
    assert os.path.exists(state)
    resumed = normstat.fit(str(root), checkpoint=state, resume=True, **kw)
    assert np.array_equal(resumed.mean, whole.mean) and np.array_equal(resumed.var, whole.var)
    allpix = np.concatenate(pixels)
    np.testing.assert_allclose(resumed.mean, allpix.mean(0), rtol=1e-14)
    np.testing.assert_allclose(resumed.var, allpix.var(0), rtol=1e-13)
    for key in ("images", "skipped", "shape"):
        assert resumed.source[key] == whole.source[key], key
    assert resumed.source["images"] == 28 and len(resumed.source["skipped"]) == 2
    assert not os.path.exists(state)


def test_checkpoint_refuses_a_changed_image(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(20):
        _png(root / f"{i:02d}.png", (4, 4))
    state = str(tmp_path / "state.npz")
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            str(root),
            workers=1,
            checkpoint=state,
            checkpoint_every=1e-9,
            progress=CrashAfter(9),
        )
    _png(root / "15.png", (5, 4))
    with pytest.raises(DataError, match="15.png"):
        normstat.fit(str(root), workers=1, checkpoint=state, resume=True)


@pytest.mark.slow
def test_dask_fit_of_images_is_the_local_fit_bit_for_bit(mixed, tmp_path):
    """Tasks reopen the image source by its reference and run the same step on the same
    batches, so the Dask tree is the local one: equal bit for bit, and to the exact sums."""
    pytest.importorskip("distributed")
    root, paths = mixed
    local = normstat.fit(str(root), workers=2)
    dask = normstat.fit(str(root), engine="dask", workers=2, task_size=3)
    assert np.array_equal(local.mean, dask.mean) and np.array_equal(local.var, dask.var)
    check(dask, exact_reference(paths))
    assert dask.source["images"] == len(paths)
    assert dask.source == local.source  # the tasks' record: images read, sizes seen
    column = tmp_path / "t.parquet"
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"img": [p.read_bytes() for p in paths]}), column, row_group_size=4)
    from_table = normstat.fit(str(column), columns=["img"], engine="dask", workers=2, task_size=5)
    assert np.array_equal(from_table.mean, local.mean) and np.array_equal(from_table.var, local.var)


def _zip_of(mixed_root: Path, paths: list[Path], out: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(out, "w") as zf:
        for p in paths:
            zf.write(p, p.relative_to(mixed_root).as_posix())
        zf.writestr("__MACOSX/._junk.jpg", b"not an image")  # not data, as in a folder
    return out


def test_zip_of_an_image_folder_is_the_folder(mixed, tmp_path):
    """A new image format as one module and one table row: the ZIP source gets the fit, the
    labels, the checkpoint record and the Dask route from the shared pipeline."""
    root, paths = mixed
    ordered = sorted(paths)  # the folder's order, which the archive keeps
    archive = _zip_of(root, ordered, tmp_path / "train.zip")
    folder = normstat.fit(str(root), workers=1)
    zipped = normstat.fit(str(archive), workers=2)
    assert np.array_equal(folder.mean, zipped.mean) and np.array_equal(folder.var, zipped.var)
    check(zipped, exact_reference(paths))
    assert zipped.source["images"] == len(paths)
    stats = _save(zipped, tmp_path)
    out = tmp_path / "out.h5"
    run("apply", stats, archive, "--resize", "8", "--center-crop", "8", "8", "-o", out, "-q")
    folder_out = tmp_path / "folder.h5"
    run("apply", stats, root, "--resize", "8", "--center-crop", "8", "8", "-o", folder_out, "-q")
    with h5py.File(out) as a, h5py.File(folder_out) as b:
        assert np.array_equal(a["labels"][...], b["labels"][...])
        assert list(a["labels"].attrs["classes"]) == list(b["labels"].attrs["classes"])
        data = [k for k in a if k not in ("labels", "normstat")]
        assert np.array_equal(a[data[0]][...], b[data[0]][...])


def test_a_zip_member_too_large_is_refused_before_reading(tmp_path, monkeypatch):
    from normstat.sources import zip_images

    _png(tmp_path / "a.png", (4, 4))
    archive = _zip_of(tmp_path, [tmp_path / "a.png"], tmp_path / "x.zip")
    monkeypatch.setattr(zip_images, "MAX_MEMBER_BYTES", 10)
    with pytest.raises(DataError, match="refused before reading"):
        normstat.fit(str(archive), workers=1)


@pytest.mark.slow
def test_zip_images_on_dask_and_from_a_checkpoint(mixed, tmp_path):
    pytest.importorskip("distributed")
    root, paths = mixed
    archive = _zip_of(root, sorted(paths), tmp_path / "train.zip")
    local = normstat.fit(str(archive), workers=1)
    dask = normstat.fit(str(archive), engine="dask", workers=2, task_size=3)
    assert np.array_equal(local.mean, dask.mean) and np.array_equal(local.var, dask.var)
    state = str(tmp_path / "state.npz")
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            str(archive),
            workers=1,
            checkpoint=state,
            checkpoint_every=1e-9,
            progress=CrashAfter(5),
        )
    resumed = normstat.fit(str(archive), workers=1, checkpoint=state, resume=True)
    assert np.array_equal(local.mean, resumed.mean) and np.array_equal(local.var, resumed.var)


def test_apply_skip_bad_leaves_bad_images_and_their_labels_out(tmp_path):
    root = tmp_path / "train"
    rng = np.random.default_rng(9)
    good = []
    for i in range(14):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        if i in (3, 10):
            (cls / f"{i:02d}.png").write_bytes(b"broken")
            continue
        a = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
        Image.fromarray(a).save(cls / f"{i:02d}.png")
        good.append((cls.name, f"{i:02d}.png", a))
    good.sort(key=lambda g: (g[0], g[1]))  # the folder's order: class, then name
    with pytest.warns(NormstatWarning, match="skipped 2 image"):
        stats = normstat.fit(str(root), workers=1, options={"skip_bad": True})
    saved = _save(stats, tmp_path)
    out = tmp_path / "out.h5"
    result = run("apply", saved, root, "--skip-bad", "-o", out)
    assert "skipped 2 image" in result.output
    x = np.stack([g[2] for g in good]).astype(np.float64)
    with h5py.File(out) as f:
        data = f[next(k for k in f if k not in ("labels", "normstat"))][...]
        np.testing.assert_array_equal(f["labels"][...], [0 if g[0] == "a" else 1 for g in good])
    np.testing.assert_allclose(
        data, (x - x.reshape(-1, 3).mean(0)) / x.reshape(-1, 3).std(0), rtol=1e-5, atol=1e-5
    )
    refused = run("apply", saved, root, "-o", tmp_path / "no.h5", ok=False)
    assert refused.exit_code == 1 and "--skip-bad" in refused.output
    assert not (tmp_path / "no.h5").exists()


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_an_image_column_read_from_a_row_skips_the_units_before_it(mixed, tmp_path, suffix):
    """A Dask task starts at its own range: the cells from row k (found from the row groups'
    / record batches' lengths, the units before k skipped) are those of a read from the start."""
    pa = pytest.importorskip("pyarrow")
    from normstat.sources import ImageOptions, open_sources

    root, paths = mixed
    table = pa.table({"img": [p.read_bytes() for p in paths]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=5)
    else:
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=5)
    (src,) = open_sources([str(path)], columns=["img"], images=ImageOptions(workers=1))
    whole = list(src._items(0))
    assert [w for w, _ in whole] == [f"{path}:img[{i}]" for i in range(len(paths))]
    for k in (0, 4, 5, 7, len(paths) - 1, len(paths)):
        assert list(src._items(k)) == whole[k:]


def test_apply_skip_bad_refuses_an_image_that_breaks_after_the_count(tmp_path, monkeypatch):
    """The output is sized for the images that decoded when they were counted: one that fails
    afterwards is an error naming it, and nothing is written (no row left unwritten)."""
    from normstat.sources.images import ImageStream

    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(4)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "9.png").write_bytes(b"broken")
    with pytest.warns(NormstatWarning, match="skipped 1 image"):
        stats = normstat.fit(str(root), workers=1, options={"skip_bad": True})
    real = ImageStream.settle

    def settle_then_damage(self):
        real(self)
        (root / "3.png").write_bytes(b"damaged after the count")

    monkeypatch.setattr(ImageStream, "settle", settle_then_damage)
    out = tmp_path / "out" / "o.npy"
    out.parent.mkdir()
    with (
        pytest.raises(DataError, match="did the file change") as caught,
        pytest.warns(NormstatWarning, match="skipped 1 image"),
    ):
        normstat.apply(stats, str(root), str(out), workers=1, options={"skip_bad": True})
    assert caught.value.path.endswith("3.png")
    assert list(out.parent.iterdir()) == []
