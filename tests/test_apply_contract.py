"""The apply contract, over every (input kind x output format x engine) the product has.

Every supported combination writes ``(x - mean) / std`` of the features (a table written as a
table keeps its other columns); every unsupported one is refused with one clear usage error
before anything is written; and a writer that fails leaves nothing behind. Image inputs (a
folder, tar shards, a ZIP, a Parquet image column) go to the array outputs on both engines, with
and without --skip-bad, checked against Pillow's decode.
"""

from __future__ import annotations

import errno
import importlib
import io
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import normstat
from normstat.errors import NormstatWarning
from normstat.sinks import OUTPUTS

engine_tests = pytest.importorskip("test_dask_engine")
cluster = engine_tests.cluster  # the same module-scoped LocalCluster fixture

zarr = pytest.importorskip("zarr")

INPUTS = ("npy", "hdf5", "zarr", "parquet", "arrow", "csv")
ARRAY_INPUTS = ("npy", "hdf5", "zarr")
OUTS = tuple(f.name for f in OUTPUTS)
SUFFIX = {f.name: f.suffixes[0] for f in OUTPUTS}
FEATURES = ["f0", "f1", "f2"]


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(15)
    return rng.normal([10.0, -3.0, 1e3], [2.0, 0.5, 40.0], (83, 3))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, x):
    root = tmp_path_factory.mktemp("contract")
    np.save(root / "in.npy", x)
    with h5py.File(root / "in.h5", "w") as f:
        f.create_dataset("/g/x", data=x, chunks=(16, 3))
    zarr.create_array(str(root / "in.zarr"), data=x, chunks=(16, 3))
    table = pa.table({"id": np.arange(len(x)), **{n: x[:, j] for j, n in enumerate(FEATURES)},
                      "label": [f"r{i}" for i in range(len(x))]})  # fmt: skip
    pq.write_table(table, root / "in.parquet", row_group_size=20)
    feather.write_feather(table, str(root / "in.arrow"), chunksize=20)
    pacsv.write_csv(table, root / "in.csv")
    paths = {"npy": "in.npy", "hdf5": "in.h5:/g/x", "zarr": "in.zarr", "parquet": "in.parquet",
             "arrow": "in.arrow", "csv": "in.csv"}  # fmt: skip
    return {k: str(root / v) for k, v in paths.items()}


def _expected_refusal(kind: str, inp: str, out: str, engine: str) -> str | None:
    """What the product refuses, and the words of its error; None: supported."""
    if kind == "array" and out not in ARRAY_INPUTS:
        return f"array data cannot be written as {out}"
    if engine == "dask" and inp == "csv":
        return "--engine dask splits a table by row groups"
    if engine == "dask" and out == "hdf5":
        return "--engine dask cannot write hdf5"
    return None


def _read(path: str, out: str) -> tuple[np.ndarray, list[str] | None]:
    """The features of an output as a matrix, and a table output's column names."""
    if out == "npy":
        return np.load(path), None
    if out == "hdf5":
        with h5py.File(path) as f:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            assert len(names) == 1, names  # the input's path (from HDF5), else /data
            return f[names[0]][...], None
    if out == "zarr":
        return np.asarray(zarr.open(path, mode="r")), None
    readers = {"parquet": pq.read_table, "arrow": feather.read_table,
               "feather": feather.read_table, "csv": pacsv.read_csv}  # fmt: skip
    t = readers[out](path)
    return np.column_stack([t.column(n).to_numpy() for n in FEATURES]), t.column_names


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("inp", INPUTS)
def test_every_combination_writes_the_zscore_or_is_refused_clearly(
    inputs, x, tmp_path, cluster, inp, out, engine
):
    kind = "array" if inp in ARRAY_INPUTS else "table"
    stats = normstat.fit(inputs[inp], columns=None if kind == "array" else FEATURES)
    target = str(tmp_path / f"out{SUFFIX[out]}")
    run = {"engine": engine, "chunk_size": 16, "task_size": 32}
    if engine == "dask":
        run["scheduler"] = cluster.scheduler_address
    why = _expected_refusal(kind, inp, out, engine)
    if why is not None:
        with pytest.raises(normstat.UsageError, match=why.replace("-", "\\-")):
            normstat.apply(stats, inputs[inp], target, **run)
        assert list(tmp_path.iterdir()) == []
        return
    normstat.apply(stats, inputs[inp], target, **run)
    got, columns = _read(target, out)
    want = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if columns is not None:  # a table written as a table keeps its other columns
        assert columns == ["id", *FEATURES, "label"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{SUFFIX[out]}"]


@pytest.mark.parametrize("inp", ["npy", "parquet"])
def test_the_output_format_option_overrides_the_suffix(inputs, x, tmp_path, inp):
    stats = normstat.fit(inputs[inp], columns=None if inp == "npy" else FEATURES)
    target = str(tmp_path / "out.data")
    normstat.apply(stats, inputs[inp], target, output_format="npy")
    np.testing.assert_allclose(np.load(target), normstat.transform(x, stats), rtol=1e-6)
    with pytest.raises(normstat.UsageError, match="unknown --output-format 'tiff'"):
        normstat.apply(stats, inputs[inp], str(tmp_path / "o2.npy"), output_format="tiff")


@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("inp", ["npy", "parquet"])
def test_a_failing_writer_leaves_nothing_and_says_so(inputs, tmp_path, monkeypatch, inp, out):
    kind = "array" if inp == "npy" else "table"
    if _expected_refusal(kind, inp, out, "local"):
        pytest.skip("not a supported combination")
    fmt = next(f for f in OUTPUTS if f.name == out)
    cls = getattr(importlib.import_module(fmt.module), fmt.writer)
    calls = {"n": 0}
    real = cls.write

    def full_disk(self, item):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, item)

    monkeypatch.setattr(cls, "write", full_disk)
    stats = normstat.fit(inputs[inp], columns=None if kind == "array" else FEATURES)
    target = tmp_path / f"out{SUFFIX[out]}"
    with pytest.raises(normstat.DataError, match="cannot write the output"):
        normstat.apply(stats, inputs[inp], str(target), chunk_size=16)
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []


def test_streams_are_local_and_carry_the_input_kind(inputs, tmp_path, cluster, capfdbinary):
    stats = normstat.fit(inputs["npy"])
    with pytest.raises(normstat.UsageError, match="-o - streams rows in order"):
        normstat.apply(stats, inputs["npy"], "-", engine="dask",
                       scheduler=cluster.scheduler_address)  # fmt: skip
    with pytest.raises(normstat.UsageError, match="zarr cannot be written to stdout"):
        normstat.apply(stats, inputs["npy"], "-", output_format="zarr")


@pytest.mark.parametrize("inp,out", [("hdf5", "npy"), ("parquet", "parquet")])
def test_workers_transform_ahead_in_order_to_the_same_bits(inputs, tmp_path, inp, out):
    stats = normstat.fit(inputs[inp], columns=None if inp in ARRAY_INPUTS else FEATURES)
    paths = [str(tmp_path / f"w{w}{SUFFIX[out]}") for w in (1, 3)]
    for w, path in zip((1, 3), paths, strict=True):
        normstat.apply(stats, inputs[inp], path, chunk_size=8, workers=w)
    np.testing.assert_array_equal(_read(paths[0], out)[0], _read(paths[1], out)[0])


# Images: a folder of JPEG and PNG files, WebDataset tar shards, a ZIP archive and an image
# column in Parquet, through every array output and both engines. Values are checked against
# Pillow's decode and numpy float64 statistics, computed here without normstat.

IMAGE_INPUTS = ("folder", "tar", "zip", "parquet-column")
IMAGE_OUTS = ("hdf5", "zarr", "npy", "-")


def _image_bytes(rng: np.random.Generator, i: int, shape: tuple[int, int]) -> tuple[str, bytes]:
    from PIL import Image

    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if i % 4 == 1:
        img = img.convert("L")  # a grey file, converted to RGB as Pillow's convert does
    buf = io.BytesIO()
    suffix = "jpg" if i % 2 == 0 else "png"
    img.save(buf, format="JPEG" if suffix == "jpg" else "PNG")
    return suffix, buf.getvalue()


def _image_sources(root: Path, files: list[tuple[str, bytes]]) -> dict[str, str]:
    """The same images (class folders a/b, sorted order) as each image input kind."""
    folder = root / "train"
    names = []
    for i, (suffix, data) in enumerate(files):
        name = f"{'ab'[i % 2]}/{i:02d}.{suffix}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        names.append(name)
    order = sorted(range(len(files)), key=lambda i: names[i])  # the folder's order
    for k, half in enumerate((order[:4], order[4:])):  # two shards: s-0.tar, s-1.tar
        with tarfile.open(root / f"s-{k}.tar", "w") as tar:
            for i in half:
                info = tarfile.TarInfo(f"{i:04d}.{files[i][0]}")
                info.size = len(files[i][1])
                tar.addfile(info, io.BytesIO(files[i][1]))
    with zipfile.ZipFile(root / "train.zip", "w") as zf:
        for i in order:
            zf.writestr(names[i], files[i][1])
    column = pa.array([files[i][1] for i in order], pa.binary())
    pq.write_table(pa.table({"img": column}), root / "train.parquet", row_group_size=3)
    return {
        "folder": str(folder),
        "tar": str(root / "s-{0..1}.tar"),
        "zip": str(root / "train.zip"),
        "parquet-column": str(root / "train.parquet"),
    }


def _pillow_pixels(data: list[bytes]) -> np.ndarray:
    """Each image as Pillow decodes it, converted to RGB, stacked as float64."""
    from PIL import Image

    return np.stack(
        [np.asarray(Image.open(io.BytesIO(d)).convert("RGB"), np.float64) for d in data]
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Nine 6x5 images (JPEG and PNG, RGB and grey) as every input kind, their pixels in the
    folder's order, and the same kinds with one image of another size."""
    rng = np.random.default_rng(17)
    files = [_image_bytes(rng, i, (6, 5)) for i in range(9)]
    names = [f"{'ab'[i % 2]}/{i:02d}.{files[i][0]}" for i in range(9)]
    order = sorted(range(9), key=lambda i: names[i])
    root = tmp_path_factory.mktemp("contract-images")
    mixed = [*files[:5], _image_bytes(rng, 5, (7, 9)), *files[6:]]
    half = files[2][1][: len(files[2][1]) // 2]
    damaged = [*files[:3], ("jpg", half), *files[4:]]  # image 3: a truncated JPEG
    return {
        "sources": _image_sources(root / "same", files),
        "mixed": _image_sources(root / "mixed", mixed),
        "damaged": _image_sources(root / "damaged", damaged),
        "pixels": _pillow_pixels([files[i][1] for i in order]),
        "labels": np.array([i % 2 for i in order]),  # a = 0, b = 1 (ImageFolder's numbering)
        "order": order,  # the images' numbers in the folder's order
        "mixed_pixels": [np.asarray(_pillow_pixels([mixed[i][1]])[0]) for i in order],
    }


def _image_call(images, kind: str, which: str = "sources") -> tuple[str, dict]:
    return images[which][kind], {"columns": ["img"]} if kind == "parquet-column" else {}


def _image_refusal(kind: str, out: str, engine: str) -> str | None:
    if engine == "dask" and out == "-":
        return "-o - streams rows in order"
    if engine == "dask" and out == "hdf5":
        return "--engine dask cannot write hdf5"
    return None


def _read_images(target: Path, out: str, stdout: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """The (N, H, W, C) output and, from HDF5, its ``/labels``."""
    if out == "-":
        return np.load(io.BytesIO(stdout)), None
    if out == "npy":
        return np.load(target), None
    if out == "zarr":
        return np.asarray(zarr.open(str(target), mode="r")), None
    with h5py.File(target) as f:
        data = [k for k in f if isinstance(f[k], h5py.Dataset) and k != "labels"]
        assert len(data) == 1, list(f)
        labels = f["labels"][...] if "labels" in f else None
        return f[data[0]][...], labels


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("out", IMAGE_OUTS)
@pytest.mark.parametrize("kind", IMAGE_INPUTS)
def test_images_write_the_zscore_of_pillows_pixels_or_are_refused_clearly(
    images, tmp_path, cluster, capfdbinary, kind, out, engine
):
    source, call = _image_call(images, kind)
    stats = normstat.fit(source, workers=1, **call)
    target = tmp_path / ("out" if out == "-" else f"out{SUFFIX[out]}")
    run = {"engine": engine, "chunk_size": 2, "task_size": 3, **call}
    if engine == "dask":
        run["scheduler"] = cluster.scheduler_address
    else:
        run["workers"] = 2  # decoding processes, the default route
    capfdbinary.readouterr()
    why = _image_refusal(kind, out, engine)
    if why is not None:
        with pytest.raises(normstat.UsageError, match=why.replace("-", "\\-")):
            normstat.apply(stats, source, "-" if out == "-" else str(target), **run)
        assert list(tmp_path.iterdir()) == []
        return
    normstat.apply(stats, source, "-" if out == "-" else str(target), **run)
    got, labels = _read_images(target, out, capfdbinary.readouterr().out)
    x = images["pixels"]
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0)
    assert got.shape == x.shape == (9, 6, 5, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, (x - mean) / std, rtol=1e-5, atol=1e-6)
    if out == "hdf5" and kind in ("folder", "zip"):  # ImageFolder's classes, numbered
        np.testing.assert_array_equal(labels, images["labels"])
    left = [] if out == "-" else [target.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == left


@pytest.mark.parametrize("kind", IMAGE_INPUTS)
def test_images_of_mixed_sizes_need_one_size_and_resize_gives_torchvisions(
    images, tmp_path, cluster, kind
):
    """Without a size the output (one array) is refused, naming the image, with nothing left;
    ``resize`` + ``center_crop`` equal Pillow's bilinear resize and the centre cut here."""
    from PIL import Image

    source, call = _image_call(images, kind, "mixed")
    stats = normstat.fit(source, workers=1, **call)
    target = tmp_path / "out.npy"
    with pytest.raises(normstat.DataError, match="--resize SIZE"):
        normstat.apply(stats, source, str(target), chunk_size=2, **call)
    assert list(tmp_path.iterdir()) == []
    if _image_refusal(kind, "npy", "dask") is None:  # a task that fails: no output either
        with pytest.raises(normstat.DataError, match="--resize SIZE"):
            normstat.apply(stats, source, str(target), chunk_size=2, task_size=2, engine="dask",
                           scheduler=cluster.scheduler_address, **call)  # fmt: skip
        assert list(tmp_path.iterdir()) == []
    options = {"resize": 4, "center_crop": (4, 3)}
    sized = normstat.fit(source, options=options, workers=1, **call)
    normstat.apply(sized, source, str(target), chunk_size=2, options=options, workers=1, **call)
    want = []
    for pixels in images["mixed_pixels"]:
        h, w = pixels.shape[:2]  # torchvision: the short side to 4, the long int(4 * long / short)
        size = (4, int(4 * w / h)) if h <= w else (int(4 * h / w), 4)
        img = Image.fromarray(pixels.astype(np.uint8)).resize(size[::-1], Image.BILINEAR)
        a = np.asarray(img, np.float64)
        top, left = int(round((a.shape[0] - 4) / 2)), int(round((a.shape[1] - 3) / 2))
        want.append(a[top : top + 4, left : left + 3])
    x = np.stack(want)
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0)
    np.testing.assert_allclose(np.load(target), (x - mean) / std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("out", ("hdf5", "zarr", "npy"))
@pytest.mark.parametrize("kind", IMAGE_INPUTS)
def test_images_a_failing_writer_leaves_nothing(images, tmp_path, monkeypatch, kind, out):
    fmt = next(f for f in OUTPUTS if f.name == out)
    cls = getattr(importlib.import_module(fmt.module), fmt.writer)
    calls = {"n": 0}
    real = cls.write

    def full_disk(self, item):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, item)

    monkeypatch.setattr(cls, "write", full_disk)
    source, call = _image_call(images, kind)
    stats = normstat.fit(source, workers=1, **call)
    target = tmp_path / f"out{SUFFIX[out]}"
    with pytest.raises(normstat.DataError, match="cannot write the output"):
        normstat.apply(stats, source, str(target), chunk_size=2, workers=1, **call)
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("kind", IMAGE_INPUTS)
def test_images_skip_bad_writes_the_others_or_names_the_bad_one(
    images, tmp_path, cluster, kind, engine
):
    """A damaged image: without ``skip_bad`` an error naming it and nothing written; with it,
    the other images' z-scores, in order, on either engine."""
    source, call = _image_call(images, kind, "damaged")
    run: dict = {"chunk_size": 2, **call}
    if engine == "dask":
        run |= {"engine": "dask", "scheduler": cluster.scheduler_address, "task_size": 3}
    else:
        run["workers"] = 2
    with pytest.warns(NormstatWarning, match="skipped 1 image"):
        stats = normstat.fit(source, workers=1, options={"skip_bad": True}, **call)
    target = tmp_path / "out.npy"
    with pytest.raises(normstat.DataError, match="--skip-bad skips such files") as caught:
        normstat.apply(stats, source, str(target), **run)
    at = list(images["order"]).index(3)  # the damaged one, named as its kind names it
    named = {"folder": "b/03.jpg", "tar": ":0003.jpg", "zip": ":b/03.jpg"}
    assert named.get(kind, f":img[{at}]") in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.warns(NormstatWarning, match="skipped 1 image"):
        normstat.apply(stats, source, str(target), options={"skip_bad": True}, **run)
    x = np.delete(images["pixels"], at, axis=0)
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0)
    np.testing.assert_allclose(np.load(target), (x - mean) / std, rtol=1e-5, atol=1e-6)
