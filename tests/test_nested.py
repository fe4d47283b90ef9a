"""Nested table columns as feature groups (LeRobot / Hugging Face layouts), against numpy float64
two-pass statistics of the stacked vectors; the artifact's groups; the LeRobot and openpi
exports; and the witness that the float32 E[x^2] - E[x]^2 formula those tools use fails on
offset data where normstat is exact."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.errors import ArtifactError, DataError, NormstatWarning

INDEX = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _vectors(values: np.ndarray) -> pa.FixedSizeListArray:
    n, k = values.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), k)


def lerobot_table(n: int = 3000, seed: int = 0) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """A LeRobot v3-like table: state and action vectors of 14 float32, five index columns."""
    rng = np.random.default_rng(seed)
    state = (rng.standard_normal((n, 14)) * 0.01 + 1.5).astype(np.float32)
    action = (rng.standard_normal((n, 14)) * 0.5 + 500).astype(np.float32)
    table = pa.table(
        {
            "observation.state": _vectors(state),
            "action": _vectors(action),
            "timestamp": pa.array(np.arange(n) / 30, pa.float32()),
            "frame_index": pa.array(np.arange(n) % 250),
            "episode_index": pa.array(np.arange(n) // 250),
            "index": pa.array(np.arange(n)),
            "task_index": pa.array(np.zeros(n, np.int64)),
        }
    )
    return table, state, action


def reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """numpy float64 two-pass statistics of stacked vectors."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    mean = x.mean(axis=0)
    return {
        "mean": mean,
        "std": np.sqrt(((x - mean) ** 2).mean(axis=0)),
        "min": x.min(axis=0),
        "max": x.max(axis=0),
    }


def assert_matches(stats: normstat.Stats, cols: slice, x: np.ndarray) -> None:
    ref = reference(x)
    for key, want in ref.items():
        got = np.asarray(getattr(stats, key)).reshape(-1)[cols]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=key)


@pytest.fixture
def lerobot_file(tmp_path):
    table, state, action = lerobot_table()
    path = tmp_path / "episode.parquet"
    pq.write_table(table, path, row_group_size=700)
    return str(path), state, action


def test_lerobot_default_fits_the_vector_groups_not_the_indices(lerobot_file, tmp_path):
    path, state, action = lerobot_file
    result = CliRunner().invoke(main, ["fit", path, "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "feature groups: 2 (observation.state [14], action [14])" in result.stderr
    for name in INDEX:
        assert f"{name} (LeRobot index column" in result.stderr
    stats = normstat.load(tmp_path / "s.json")
    assert stats.feature_groups == [
        {"name": "observation.state", "shape": [14], "start": 0},
        {"name": "action", "shape": [14], "start": 14},
    ]
    assert stats.features[:2] == ["observation.state[0]", "observation.state[1]"]
    assert [d["name"] for d in stats.source["left_out"]] == list(INDEX)
    assert_matches(stats, slice(0, 14), state)
    assert_matches(stats, slice(14, 28), action)
    assert (stats.count == len(state)).all()
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["schema_version"] == 2


def test_chunking_and_engine_do_not_change_the_result(lerobot_file):
    path, state, _ = lerobot_file
    whole = normstat.fit(path)
    small = normstat.fit(path, chunk_size="8KiB", workers=2)
    np.testing.assert_allclose(small.mean, whole.mean, rtol=1e-14, atol=0)
    np.testing.assert_allclose(small.std, whole.std, rtol=1e-12, atol=0)
    assert_matches(small, slice(0, 14), state)


def test_index_columns_are_fitted_when_named(lerobot_file):
    path, state, _ = lerobot_file
    stats = normstat.fit(path, columns=["observation.state", "frame_index"])
    assert stats.feature_groups[-1] == {"name": "frame_index", "shape": [], "start": 14}
    assert_matches(stats, slice(14, 15), (np.arange(len(state)) % 250)[:, None])


def test_arrow_ipc_file_and_stream(tmp_path):
    table, state, action = lerobot_table(500)
    for name, writer in (("f.arrow", ipc.new_file), ("s.arrow", ipc.new_stream)):
        with pa.OSFile(str(tmp_path / name), "wb") as sink, writer(sink, table.schema) as w:
            for b in table.to_batches(max_chunksize=128):
                w.write_batch(b)
        stats = normstat.fit(str(tmp_path / name))
        assert_matches(stats, slice(0, 14), state)
        assert_matches(stats, slice(14, 28), action)


def hf_table(n: int = 400, seed: int = 1) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """What ``datasets`` writes, read without ``datasets``: Sequence(length=3) as a fixed-size
    list, Array2D as nested lists with its extension name in the field metadata, a ClassLabel,
    an image struct and a token list; the features in the ``huggingface`` metadata."""
    rng = np.random.default_rng(seed)
    vec = rng.standard_normal((n, 3)).astype(np.float32)
    img = rng.standard_normal((n, 2, 3)) * 10 + 3
    nested_lists = pa.array(img.tolist(), pa.list_(pa.list_(pa.float64())))
    ext = {
        b"ARROW:extension:name": b"datasets.features.features.Array2DExtensionType",
        b"ARROW:extension:metadata": b'[[2, 3], "float64"]',
    }
    features = {
        "vec": {"feature": {"dtype": "float32", "_type": "Value"}, "length": 3, "_type": "List"},
        "arr": {"shape": [2, 3], "dtype": "float64", "_type": "Array2D"},
        "label": {"names": ["a", "b", "c"], "_type": "ClassLabel"},
        "image": {"_type": "Image"},
        "tokens": {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "List"},
    }
    schema = pa.schema(
        [
            pa.field("vec", pa.list_(pa.float32(), 3)),
            pa.field("arr", nested_lists.type, metadata=ext),
            pa.field("label", pa.int64()),
            pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            pa.field("tokens", pa.list_(pa.int64())),
        ],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    table = pa.table(
        [
            _vectors(vec),
            nested_lists,
            pa.array(rng.integers(0, 3, n)),
            pa.array([{"bytes": b"", "path": None}] * n, schema.field("image").type),
            pa.array([[1] * (i % 4) for i in range(n)], pa.list_(pa.int64())),
        ],
        schema=schema,
    )
    return table, {"vec": vec, "arr": img}


def test_hf_parquet_groups_classlabel_and_images_left_out(tmp_path):
    table, data = hf_table()
    path = tmp_path / "hf.parquet"
    pq.write_table(table, path, row_group_size=150)
    result = CliRunner().invoke(main, ["fit", str(path), "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "left out: label (ClassLabel)" in result.stderr
    assert "tokens (list<" in result.stderr and "undeclared length" in result.stderr
    stats = normstat.load(tmp_path / "s.json")
    assert [(g["name"], g["shape"]) for g in stats.feature_groups] == [
        ("vec", [3]),
        ("arr", [2, 3]),
    ]
    assert stats.features[3:5] == ["arr[0,0]", "arr[0,1]"]
    assert_matches(stats, slice(0, 3), data["vec"])
    assert_matches(stats, slice(3, 9), data["arr"])


def test_fixed_shape_tensor_extension(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 2, 2)).astype(np.float32) + 7
    tensor_type = pa.fixed_shape_tensor(pa.float32(), (2, 2))
    storage = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)
    table = pa.table({"t": pa.ExtensionArray.from_storage(tensor_type, storage)})
    pq.write_table(table, tmp_path / "t.parquet")
    stats = normstat.fit(str(tmp_path / "t.parquet"))
    assert stats.feature_groups == [{"name": "t", "shape": [2, 2], "start": 0}]
    assert_matches(stats, slice(0, 4), x)


def test_list_column_of_one_length_and_the_row_of_another(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 5))
    pq.write_table(pa.table({"v": pa.array(x.tolist())}), tmp_path / "ok.parquet")
    stats = normstat.fit(str(tmp_path / "ok.parquet"), columns=["v"])
    assert stats.feature_groups == [{"name": "v", "shape": [5], "start": 0}]
    assert_matches(stats, slice(0, 5), x)
    rows = x.tolist()
    rows[777] = rows[777][:4]
    pq.write_table(pa.table({"v": pa.array(rows)}), tmp_path / "bad.parquet", row_group_size=300)
    with pytest.raises(DataError, match="row 777 holds a value of another shape") as info:
        normstat.fit(str(tmp_path / "bad.parquet"), columns=["v"])
    assert info.value.row == 777


def test_inner_length_of_a_tensor_row_is_checked(tmp_path):
    rows = [[[1.0, 2.0], [3.0, 4.0]]] * 10
    rows[6] = [[1.0, 2.0], [3.0]]
    pq.write_table(pa.table({"m": pa.array(rows)}), tmp_path / "m.parquet")
    with pytest.raises(DataError, match="row 6 holds"):
        normstat.fit(str(tmp_path / "m.parquet"), columns=["m"])


def test_struct_field_by_dotted_path(tmp_path):
    rng = np.random.default_rng(4)
    state = rng.standard_normal((600, 7)) + 3
    grip = rng.standard_normal(600)
    obs = pa.StructArray.from_arrays([_vectors(state), pa.array(grip)], names=["state", "grip"])
    pq.write_table(pa.table({"observation": obs}), tmp_path / "s.parquet", row_group_size=200)
    stats = normstat.fit(
        str(tmp_path / "s.parquet"), columns=["observation.state", "observation.grip"]
    )
    assert [g["name"] for g in stats.feature_groups] == ["observation.state", "observation.grip"]
    assert_matches(stats, slice(0, 7), state)
    assert_matches(stats, slice(7, 8), grip[:, None])
    with pytest.raises(DataError, match="no column 'observation.nope'"):
        normstat.fit(str(tmp_path / "s.parquet"), columns=["observation.nope"])


def test_null_rows_and_elements_are_missing_values(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((400, 3))
    valid = np.ones(400, bool)
    valid[[10, 200]] = False
    values = pa.array(x.reshape(-1), mask=np.isin(np.arange(1200), [301 * 3 + 1]))
    col = pa.FixedSizeListArray.from_arrays(values, 3, mask=pa.array(~valid))
    pq.write_table(pa.table({"v": col}), tmp_path / "n.parquet", row_group_size=128)
    with pytest.raises(DataError, match="NaN at row 10, feature v\\[0\\]"):
        normstat.fit(str(tmp_path / "n.parquet"), nan="error")
    stats = normstat.fit(str(tmp_path / "n.parquet"))
    expect = x.copy()
    expect[~valid] = np.nan
    expect[301, 1] = np.nan
    np.testing.assert_array_equal(stats.nan_count, np.isnan(expect).sum(axis=0))
    np.testing.assert_allclose(stats.mean, np.nanmean(expect, axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, np.nanstd(expect, axis=0), rtol=1e-12)


def test_non_numeric_lists_are_refused_by_name(tmp_path):
    pq.write_table(pa.table({"s": pa.array([["a"], ["b"]])}), tmp_path / "s.parquet")
    with pytest.raises(DataError, match="its elements are not numbers"):
        normstat.fit(str(tmp_path / "s.parquet"), columns=["s"])


# ---------------------------------------------------------------------------------------------
# the witness: the float32 E[x^2] - E[x]^2 of LeRobot's RunningQuantileStats and openpi's
# RunningStats fails on offset data; normstat is exact


def float32_mean_of_squares_std(x: np.ndarray, batch: int = 256) -> np.ndarray:
    """The running update of LeRobot ``compute_stats.RunningQuantileStats`` / openpi
    ``normalize.RunningStats`` on float32 batches: running mean and mean of squares, then
    ``sqrt(max(0, E[x^2] - E[x]^2))``."""
    count, mean, sq = 0, None, None
    for start in range(0, len(x), batch):
        b = x[start : start + batch]
        if mean is None:
            mean, sq = b.mean(axis=0), (b**2).mean(axis=0)
        count += len(b)
        mean = mean + (b.mean(axis=0) - mean) * np.float32(len(b) / count)
        sq = sq + ((b**2).mean(axis=0) - sq) * np.float32(len(b) / count)
    return np.sqrt(np.maximum(0, sq - mean**2))


def test_witness_offset_data_where_float32_formula_fails(tmp_path):
    rng = np.random.default_rng(6)
    n = 20_000
    x = np.stack(
        [
            1.5 + 0.01 * rng.standard_normal(n),  # joint angles (rad)
            500 + 0.5 * rng.standard_normal(n),  # positions (mm)
            1e4 + 1.0 * rng.standard_normal(n),  # encoder ticks
        ],
        axis=1,
    ).astype(np.float32)
    truth = reference(x)["std"]
    naive = float32_mean_of_squares_std(x)
    rel_naive = np.abs(naive - truth) / truth
    # the witness: the formula fails on this data (measured: 0.14%, 17%, 183%)
    assert rel_naive[0] > 1e-3 and rel_naive[1] > 0.1 and rel_naive[2] > 0.5
    table = pa.table({"observation.state": _vectors(x), "frame_index": pa.array(np.arange(n))})
    table = table.append_column("episode_index", pa.array(np.zeros(n, np.int64)))
    pq.write_table(table, tmp_path / "w.parquet", row_group_size=3000)
    stats = normstat.fit(str(tmp_path / "w.parquet"))
    np.testing.assert_allclose(stats.std, truth, rtol=1e-12, atol=0)
    exported = normstat.export(stats, "lerobot")["observation.state"]
    np.testing.assert_allclose(exported["std"], truth, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# the LeRobot and openpi exports


def test_export_lerobot_layout_with_quantiles(lerobot_file, tmp_path):
    path, state, action = lerobot_file
    levels = (0.01, 0.1, 0.5, 0.9, 0.99)
    stats = normstat.fit(path, quantiles=levels, exact=True)
    out = normstat.export(stats, "lerobot")
    assert set(out) == {"observation.state", "action"}
    entry = out["action"]
    assert set(entry) == {"mean", "std", "min", "max", "count", "q01", "q10", "q50", "q90", "q99"}
    assert entry["count"] == [len(action)]
    ref = reference(action)
    for key in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(entry[key], ref[key], rtol=1e-12, err_msg=key)
    a64 = action.astype(np.float64)
    for q, key in zip(levels, ("q01", "q10", "q50", "q90", "q99"), strict=True):
        np.testing.assert_array_equal(entry[key], np.quantile(a64, q, axis=0), err_msg=key)
    result = CliRunner().invoke(main, ["fit", path, "-q", "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0
    result = CliRunner().invoke(main, ["export", str(tmp_path / "s.json"), "--to", "lerobot"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed["observation.state"]) == {"mean", "std", "min", "max", "count"}
    np.testing.assert_allclose(printed["observation.state"]["mean"], reference(state)["mean"])


def test_export_lerobot_scalar_columns_have_shape_1(tmp_path):
    x = np.random.default_rng(7).standard_normal(100)
    pq.write_table(pa.table({"reward": x}), tmp_path / "r.parquet")
    out = normstat.export(normstat.fit(str(tmp_path / "r.parquet")), "lerobot")
    assert out["reward"]["mean"] == [pytest.approx(x.mean(), rel=1e-12)]
    assert out["reward"]["count"] == [100]


def test_export_openpi_norm_stats(lerobot_file):
    path, state, _ = lerobot_file
    stats = normstat.fit(path, quantiles=(0.01, 0.99), exact=True)
    out = normstat.export(stats, "openpi")
    entry = out["norm_stats"]["observation.state"]
    assert set(entry) == {"mean", "std", "q01", "q99"}
    np.testing.assert_allclose(entry["std"], reference(state)["std"], rtol=1e-12)
    s64 = state.astype(np.float64)
    np.testing.assert_array_equal(entry["q99"], np.quantile(s64, 0.99, axis=0))
    plain = normstat.export(normstat.fit(path), "openpi")["norm_stats"]["action"]
    assert set(plain) == {"mean", "std"}  # no quantiles fitted: openpi's q01 / q99 stay None


def test_export_lerobot_images_per_channel_on_the_0_1_scale(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"{i}.png")
    stats = normstat.fit(str(tmp_path))
    out = normstat.export(stats, "lerobot")
    entry = out["observation.image"]
    flat = pixels.reshape(-1, 3).astype(np.float64) / 255
    assert np.asarray(entry["mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(entry["mean"]).reshape(3), flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(entry["std"]).reshape(3), flat.std(0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(entry["max"]).reshape(3), flat.max(0), rtol=1e-12)
    assert entry["count"] == [4]


def test_export_of_unnamed_arrays_is_refused():
    stats = normstat.fit_arrays(np.ones((10, 3)))
    with pytest.raises(normstat.UsageError, match="per named column"):
        normstat.export(stats, "lerobot")


# ---------------------------------------------------------------------------------------------
# groups through merge, diff, apply and the artifact


def test_merge_of_halves_equals_the_whole(tmp_path):
    table, state, action = lerobot_table(2000)
    pq.write_table(table.slice(0, 900), tmp_path / "a.parquet")
    pq.write_table(table.slice(900), tmp_path / "b.parquet")
    a = normstat.fit(str(tmp_path / "a.parquet"))
    b = normstat.fit(str(tmp_path / "b.parquet"))
    merged = normstat.merge([a, b])
    assert merged.feature_groups == a.feature_groups
    assert_matches(merged, slice(0, 14), state)
    assert_matches(merged, slice(14, 28), action)
    other = normstat.fit(str(tmp_path / "b.parquet"), columns=["action", "observation.state"])
    with pytest.raises(ArtifactError, match="disagrees"):
        normstat.merge([a, other])


def test_diff_names_the_group_element(tmp_path):
    table, _, _ = lerobot_table(2000)
    pq.write_table(table.slice(0, 1000), tmp_path / "a.parquet")
    shifted = table.slice(1000)
    moved = np.stack(shifted.column("action").to_pylist()).astype(np.float32)
    moved[:, 3] += 5
    shifted = shifted.set_column(1, "action", _vectors(moved))
    pq.write_table(shifted, tmp_path / "b.parquet")
    d = normstat.diff(
        normstat.fit(str(tmp_path / "a.parquet")), normstat.fit(str(tmp_path / "b.parquet"))
    )
    assert d.names[int(d.order[0])] == "action[3]"
    assert abs(d.mean_shift[int(d.order[0])]) > 5


def test_apply_writes_groups_back_as_vectors(lerobot_file, tmp_path):
    path, state, action = lerobot_file
    stats = normstat.fit(path)
    out = tmp_path / "out.parquet"
    normstat.apply(stats, [path], str(out))
    t = pq.read_table(out)
    assert t.schema.field("action").type == pa.list_(pa.float32(), 14)
    assert t.column("frame_index").equals(pq.read_table(path).column("frame_index"))
    got = t.column("action").combine_chunks().values.to_numpy().reshape(-1, 14)
    ref = reference(action)
    np.testing.assert_allclose(
        got, (action.astype(np.float64) - ref["mean"]) / ref["std"], rtol=2e-6, atol=2e-6
    )
    normstat.apply(stats, [path], str(tmp_path / "out.npy"))
    arr = np.load(tmp_path / "out.npy")
    assert arr.shape == (len(state), 28)
    np.testing.assert_allclose(arr[:, 14:], got, rtol=1e-6, atol=1e-6)


def test_version_1_artifacts_still_load_and_groups_are_validated(tmp_path, lerobot_file):
    path, _, _ = lerobot_file
    plain = tmp_path / "plain.json"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 5.0]}), tmp_path / "p.parquet")
    normstat.fit(str(tmp_path / "p.parquet"), output=str(plain))
    doc = json.loads(plain.read_text())
    assert doc["schema_version"] == 1 and "feature_groups" not in doc
    assert normstat.load(plain).feature_groups is None
    grouped = tmp_path / "g.json"
    normstat.fit(path, output=str(grouped))
    doc = json.loads(grouped.read_text())
    doc["feature_groups"][1]["start"] = 13
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="'feature_groups' must be objects"):
        normstat.load(bad)
    npz = tmp_path / "g.npz"
    normstat.fit(path, output=str(npz))
    assert normstat.load(npz).feature_groups == normstat.load(grouped).feature_groups


# ---------------------------------------------------------------------------------------------
# save_to_disk directories


def _save_to_disk(directory: str, table: pa.Table, shards: int = 2) -> None:
    os.makedirs(directory)
    files = []
    for i, part in enumerate(np.array_split(np.arange(table.num_rows), shards)):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        sink = pa.OSFile(os.path.join(directory, name), "wb")
        with sink, ipc.new_stream(sink, table.schema) as w:
            w.write_table(table.slice(int(part[0]), len(part)))
        files.append({"filename": name})
    with open(os.path.join(directory, "state.json"), "w") as fp:
        json.dump({"_data_files": files, "_split": None}, fp)
    with open(os.path.join(directory, "dataset_info.json"), "w") as fp:
        json.dump({"features": {}}, fp)


def test_save_to_disk_directory_reads_the_listed_files_only(tmp_path):
    table, data = hf_table(300)
    d = str(tmp_path / "ds")
    _save_to_disk(d, table)
    sink = pa.OSFile(os.path.join(d, "cache-0123.arrow"), "wb")  # left by map()
    with sink, ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.slice(0, 50))
    stats = normstat.fit(d)
    assert len(stats.source["paths"]) == 2
    assert_matches(stats, slice(0, 3), data["vec"])
    assert_matches(stats, slice(3, 9), data["arr"])


def test_dataset_dict_directory_asks_for_a_split(tmp_path):
    table, _ = hf_table(50)
    root = tmp_path / "dd"
    _save_to_disk(str(root / "train"), table)
    _save_to_disk(str(root / "test"), table)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(DataError, match="is a DatasetDict .*name one split"):
        normstat.fit(str(root))
    assert normstat.fit(str(root / "train")).count.min() == 50


def test_files_written_by_hugging_face_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(9)
    n = 200
    features = datasets.Features(
        {
            "state": datasets.Sequence(datasets.Value("float32"), length=4),
            "arr": datasets.Array2D(shape=(2, 3), dtype="float32"),
            "label": datasets.ClassLabel(names=["a", "b"]),
        }
    )
    state = rng.standard_normal((n, 4)).astype(np.float32) + 100
    arr = rng.standard_normal((n, 2, 3)).astype(np.float32)
    ds = datasets.Dataset.from_dict(
        {"state": state.tolist(), "arr": arr.tolist(), "label": [0, 1] * (n // 2)},
        features=features,
    )
    ds.to_parquet(str(tmp_path / "hf.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    for source in (tmp_path / "hf.parquet", tmp_path / "disk"):
        stats = normstat.fit(str(source))
        assert [g["name"] for g in stats.feature_groups] == ["state", "arr"]
        assert {"name": "label", "reason": "ClassLabel"} in stats.source["left_out"]
        assert_matches(stats, slice(0, 4), state)
        assert_matches(stats, slice(4, 10), arr)
    with pytest.warns(NormstatWarning, match="ClassLabel"):  # the table in memory: the same
        in_memory = normstat.fit_arrays(ds.data.table)
    assert in_memory.feature_groups == stats.feature_groups
    assert in_memory.features == stats.features
    assert_matches(in_memory, slice(0, 4), state)
    assert_matches(in_memory, slice(4, 10), arr)


def test_dask_engine_equals_local(lerobot_file, tmp_path):
    pytest.importorskip("dask.distributed")
    path, state, action = lerobot_file
    local = normstat.fit(path)
    dask = normstat.fit(path, engine="dask", workers=2, task_size="64KiB")
    assert dask.feature_groups == local.feature_groups
    np.testing.assert_allclose(dask.mean, local.mean, rtol=1e-14, atol=0)
    np.testing.assert_allclose(dask.std, local.std, rtol=1e-12, atol=0)
    normstat.apply(local, [path], str(tmp_path / "d.parquet"), engine="dask", workers=2)
    normstat.apply(local, [path], str(tmp_path / "l.parquet"))
    assert pq.read_table(tmp_path / "d.parquet").equals(pq.read_table(tmp_path / "l.parquet"))


def test_drift_of_a_source_against_grouped_statistics(tmp_path):
    table, _, _ = lerobot_table(2000)
    pq.write_table(table.slice(0, 1000), tmp_path / "a.parquet")
    moved = np.stack(table.slice(1000).column("observation.state").to_pylist())
    moved[:, 5] += 1.0  # 100 training standard deviations
    b = table.slice(1000).set_column(0, "observation.state", _vectors(moved.astype(np.float32)))
    pq.write_table(b, tmp_path / "b.parquet")
    d = normstat.drift(normstat.fit(str(tmp_path / "a.parquet")), str(tmp_path / "b.parquet"))
    worst = int(d.order[0])
    assert d.names[worst] == "observation.state[5]"
    assert abs(d.mean_shift[worst]) > 50


def test_export_lerobot_image_column_of_a_table(tmp_path):
    """LeRobot ``image`` features are HF Image structs in the Parquet file: fitted as an image
    column, exported under the column's name in (C, 1, 1) on the 0-1 scale."""
    import io

    from PIL import Image

    rng = np.random.default_rng(10)
    pixels = rng.integers(0, 256, (6, 4, 5, 3), dtype=np.uint8)
    cells = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, format="PNG")
        cells.append({"bytes": buf.getvalue(), "path": None})
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "observation.images.top": pa.array(cells, image_type),
            "frame_index": np.arange(6),
            "episode_index": np.zeros(6, np.int64),
        }
    )
    pq.write_table(table, tmp_path / "img.parquet")
    stats = normstat.fit(str(tmp_path / "img.parquet"), columns=["observation.images.top"])
    entry = normstat.export(stats, "lerobot")["observation.images.top"]
    flat = pixels.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(np.asarray(entry["mean"]).reshape(3), flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(entry["std"]).reshape(3), flat.std(0), rtol=1e-12)
    assert np.asarray(entry["min"]).shape == (3, 1, 1)
    assert entry["count"] == [6]


@pytest.mark.slow
def test_vector_groups_fit_and_apply_memory_is_bounded(tmp_path):
    """A ~330 MB LeRobot-like file in row groups of 2**20 rows (pyarrow's default): fit and
    apply stay bounded by a row group of the vector columns, which pyarrow decodes whole
    (measured 415-441 and 331-340 MB; slow: writes the file)."""
    import subprocess
    import sys

    path, out = str(tmp_path / "big.parquet"), str(tmp_path / "out.parquet")
    rng = np.random.default_rng(12)
    rows, sums = 3 * 2**20, np.zeros(14)
    with pq.ParquetWriter(path, lerobot_table(8)[0].schema) as w:
        for _ in range(3):
            table, state, _ = lerobot_table(2**20, seed=int(rng.integers(1 << 30)))
            sums += state.sum(axis=0, dtype=np.float64)
            w.write_table(table, row_group_size=2**20)
    del table, state
    peak = "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"

    def peak_mb(code: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", f"{code}; {peak}"], check=True, capture_output=True, text=True
        )
        return int(done.stdout.split()[-1]) / 1024

    stats = str(tmp_path / "s.json")
    fit = peak_mb(f"import normstat; normstat.fit({path!r}, output={stats!r})")
    apply = peak_mb(f"import normstat; normstat.apply({stats!r}, {path!r}, {out!r})")
    np.testing.assert_allclose(normstat.load(stats).mean[:14], sums / rows, rtol=1e-12)
    assert pq.ParquetFile(out).metadata.num_rows == rows
    print(f"peak RSS: fit {fit:.0f} MB, apply {apply:.0f} MB")
    assert fit < 500 and apply < 450, (fit, apply)


def _struct_table(n: int = 500) -> pa.Table:
    rng = np.random.default_rng(12)
    state = rng.standard_normal((n, 7)) + 3
    obs = pa.StructArray.from_arrays(
        [_vectors(state), pa.array(rng.standard_normal(n))], names=["state", "grip"]
    )
    x = rng.standard_normal((n, 2, 2)).astype(np.float32) + 7
    tensor = pa.ExtensionArray.from_storage(
        pa.fixed_shape_tensor(pa.float32(), (2, 2)),
        pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4),
    )
    v = pa.array((rng.standard_normal((n, 5)) * 4).tolist())  # list<double> of one length
    return pa.table({"observation": obs, "t": tensor, "v": v, "y": rng.integers(0, 9, n)})


def _stacked(table: pa.Table, name: str) -> np.ndarray:
    """A group's values per row as numpy float64 (rows, k), through Python lists: independent
    of the Arrow buffers normstat reads."""
    col = table.column(name) if name in table.column_names else None
    if col is None:  # a struct field by dotted path
        top, field = name.split(".", 1)
        col = pa.chunked_array([c.field(field) for c in table.column(top).chunks])
    if isinstance(col.type, pa.BaseExtensionType):
        col = pa.chunked_array([c.storage for c in col.chunks])
    return np.asarray(col.to_pylist(), np.float64).reshape(table.num_rows, -1)


@pytest.mark.filterwarnings("ignore::normstat.errors.NormstatWarning")
@pytest.mark.parametrize(
    ("make", "columns"),
    [
        (lambda: lerobot_table(800)[0], None),
        (lambda: hf_table()[0], None),
        (_struct_table, None),
        (_struct_table, ["observation.state", "t", "v", "observation.grip"]),
    ],
)
def test_fit_arrays_of_an_arrow_table_equals_the_fit_of_its_parquet_file(tmp_path, make, columns):
    table = make()
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=128)
    from_file = normstat.fit(str(path), columns=columns)
    assert from_file.feature_groups is not None
    batch = table.combine_chunks().to_batches()[0]
    acc = normstat.Accumulator(columns=columns)
    for part in table.to_batches(max_chunksize=300):  # batches of one dataset
        acc.update(part)
    for got in (
        normstat.fit_arrays(table, columns=columns),
        normstat.fit_arrays(batch, columns=columns),
        acc.result(),
    ):
        assert got.features == from_file.features
        assert got.feature_groups == from_file.feature_groups
        for k in ("count", "mean", "var", "min", "max"):
            np.testing.assert_allclose(getattr(got, k), getattr(from_file, k), rtol=1e-12)
        flat = np.concatenate(
            [_stacked(table, g["name"]) for g in from_file.feature_groups], axis=1
        )
        assert_matches(got, slice(0, flat.shape[1]), flat)


def test_fit_arrays_of_an_arrow_table_says_what_it_left_out_and_names_a_bad_row():
    table, data = hf_table()
    with pytest.warns(NormstatWarning, match=r"label \(ClassLabel\)"):
        stats = normstat.fit_arrays(table)
    assert [g["name"] for g in stats.feature_groups] == ["vec", "arr"]
    assert_matches(stats, slice(0, 3), data["vec"])
    rows = np.ones((50, 3)).tolist()
    rows[31] = [1.0, 2.0]
    with pytest.raises(DataError, match="row 31 holds a value of another shape"):
        normstat.fit_arrays(pa.table({"v": pa.array(rows)}), columns=["v"])


def test_transform_of_an_arrow_table_with_vector_columns_uses_its_groups(tmp_path):
    table, state, action = lerobot_table(500)
    pq.write_table(table, tmp_path / "e.parquet")
    stats = normstat.fit(str(tmp_path / "e.parquet"))  # the groups of a file ...
    z = normstat.transform(table, stats, dtype=np.float64)  # ... applied to the table in memory
    x = np.concatenate([state, action], axis=1).astype(np.float64)
    np.testing.assert_allclose(z, (x - x.mean(axis=0)) / x.std(axis=0), rtol=1e-9, atol=1e-9)
    other = pa.table(
        {"observation.state": _vectors(np.ones((4, 3))), "action": _vectors(np.ones((4, 14)))}
    )
    with pytest.raises(normstat.UsageError, match="are not those of the statistics"):
        normstat.transform(other, stats)
