"""``--by COL`` and ``--weights COL`` (SPEC "Nested table columns, groups and weights").

References are independent: pandas ``groupby(...).agg(mean, var(ddof=0))`` for the groups,
scikit-learn's ``StandardScaler(sample_weight=...)`` and numpy's ``average`` for the weights,
numpy float64 two-pass for the pooled statistics; merges over seeded random splits.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.core.groups import GroupedMoments, GroupIndex, grouped_moments, weighted_moments
from normstat.errors import ArtifactError, DataError, NormstatWarning, UsageError

sklearn_pre = pytest.importorskip("sklearn.preprocessing")


def _run(args: list[str]):
    return CliRunner().invoke(main, args)


def _frame(n: int = 6000, groups: int = 40, seed: int = 7, sort: bool = True) -> pd.DataFrame:
    """Groups of different sizes, offsets and spreads (one with a huge offset), NaN in ``a``."""
    rng = np.random.default_rng(seed)
    key = rng.integers(0, groups, n)
    if sort:
        key = np.sort(key)
    offset = rng.normal(0, 50, groups)
    offset[3] = 1e6  # a group far from the others: Chan's merge must stay exact
    a = offset[key] + rng.normal(0, 1 + key % 5, n)
    a[rng.random(n) < 0.03] = np.nan
    b = (rng.normal(2, 3, n) * (1 + key)).astype(np.float32)
    c = rng.integers(-100, 100, n).astype(np.int16)
    w = rng.random(n) * 4
    w[rng.random(n) < 0.05] = 0.0
    return pd.DataFrame({"episode_index": key, "a": a, "b": b, "c": c, "w": w})


def _parquet(df: pd.DataFrame, path, row_group_size: int = 500) -> str:
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size
    )
    return str(path)


def _pandas_groups(df: pd.DataFrame, key: str, cols: list[str]) -> tuple[np.ndarray, ...]:
    g = df[[key, *cols]].astype({c: np.float64 for c in cols}).groupby(key)[cols]
    agg = g.agg(["mean", lambda s: s.var(ddof=0), "min", "max", "count"])
    pick = lambda what: np.stack([agg[(c, what)].to_numpy() for c in cols], axis=1)  # noqa: E731
    return (
        np.asarray(agg.index),
        pick("mean"),
        pick("<lambda_0>"),
        pick("min"),
        pick("max"),
        pick("count"),
    )


def _weighted_reference(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy's weighted formulas, float64 two-pass, per column skipping NaN."""
    means, vars_ = [], []
    for j in range(x.shape[1]):
        ok = ~np.isnan(x[:, j]) & (w > 0)
        m = np.average(x[ok, j], weights=w[ok])
        means.append(m)
        vars_.append(np.average((x[ok, j] - m) ** 2, weights=w[ok]))
    return np.array(means), np.array(vars_)


# --------------------------------------------------------------------------------------------
# core: the kernels against pandas, numpy and scikit-learn


@pytest.mark.parametrize("sort", [True, False])
def test_grouped_moments_equal_pandas_groupby(sort):
    df = _frame(sort=sort)
    cols = ["a", "b", "c"]
    index = GroupIndex.from_keys(df.episode_index.to_numpy())
    assert (index.order is None) == sort  # sorted keys take the no-sort path
    m = grouped_moments([df[c].to_numpy() for c in cols], index)
    keys, mean, var, lo, hi, count = _pandas_groups(df, "episode_index", cols)
    assert np.array_equal(index.keys, keys)
    assert np.array_equal(m.count, count)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(m.m2 / m.count, var, rtol=1e-9, atol=1e-12)
    assert np.array_equal(m.min, lo) and np.array_equal(m.max, hi)


def test_grouped_moments_over_blocks_of_groups_equal_pandas():
    """Chunks larger than a block of deviations: groups of one row, of thousands, and one
    larger than a block, in order and out of it."""
    rng = np.random.default_rng(12)
    sizes = np.r_[1, 70_000, rng.integers(1, 3000, 120), 1, 1]
    key = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.normal(100, 3, len(key)).astype(np.float32) + key.astype(np.float32)
    df = pd.DataFrame({"k": key, "x": x})
    keys, mean, var, lo, hi, count = _pandas_groups(df, "k", ["x"])
    for order in (np.arange(len(key)), rng.permutation(len(key))):
        index = GroupIndex.from_keys(key[order])
        m = grouped_moments([x[order]], index)
        assert np.array_equal(m.count, count)
        np.testing.assert_allclose(m.mean, mean, rtol=1e-14)
        np.testing.assert_allclose(m.m2 / m.count, var, rtol=1e-9, atol=1e-12)
        assert np.array_equal(m.min, lo) and np.array_equal(m.max, hi)


def test_group_codes_and_keys_give_the_same_index():
    rng = np.random.default_rng(3)
    keys = rng.choice(np.array(["spk-b", "spk-a", "spk-c", "spk-z"]), 500)
    values, first = np.unique(keys, return_index=True)
    # codes into a dictionary in order of first appearance, as Arrow's encoding gives them
    appear = values[np.argsort(first)]
    codes = np.searchsorted(values, keys)
    to_appear = np.argsort(np.argsort(first))
    a = GroupIndex.from_codes(to_appear[codes], appear)
    b = GroupIndex.from_keys(keys)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.sizes, b.sizes)


def test_weighted_moments_equal_scikit_learn_and_numpy():
    df = _frame()
    x = df[["a", "b", "c"]].to_numpy(np.float64)
    w = df.w.to_numpy()
    m = weighted_moments([df[c].to_numpy() for c in ("a", "b", "c")], w)
    mean, var = _weighted_reference(x, w)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(m.m2 / m.weight, var, rtol=1e-10)
    sk = sklearn_pre.StandardScaler().fit(x, sample_weight=w)
    np.testing.assert_allclose(m.mean, sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(m.m2 / m.weight, sk.var_, rtol=1e-9)


def test_zero_weight_is_a_removed_row_and_integer_weight_a_repeated_row():
    rng = np.random.default_rng(11)
    x = rng.normal(5, 2, 300)
    w = rng.integers(0, 4, 300)
    m = weighted_moments([x], w.astype(np.float64))
    repeated = np.repeat(x, w)
    assert int(m.count[0]) == int((w > 0).sum())
    np.testing.assert_allclose(m.mean[0], repeated.mean(), rtol=1e-14)
    np.testing.assert_allclose(m.m2[0] / m.weight[0], repeated.var(), rtol=1e-12)
    assert m.min[0] == repeated.min() and m.max[0] == repeated.max()


def test_weighted_merge_of_any_split_equals_the_whole_at_a_large_offset():
    rng = np.random.default_rng(5)
    x = rng.normal(1e6, 1.0, (4000, 2))
    w = rng.random(4000) * 3
    whole = weighted_moments([x[:, 0], x[:, 1]], w)
    for trial in range(5):
        cuts = np.sort(rng.choice(np.arange(1, 4000), 1 + trial * 3, replace=False))
        parts = [
            weighted_moments([p[:, 0], p[:, 1]], q)
            for p, q in zip(np.split(x, cuts), np.split(w, cuts), strict=True)
        ]
        merged = parts[0]
        for p in parts[1:]:
            merged = merged.merge(p)
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-15)
        np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-10)
        np.testing.assert_allclose(merged.weight, whole.weight, rtol=1e-14)


def test_grouped_merge_of_any_split_equals_the_whole():
    df = _frame(sort=False)
    cols = [df[c].to_numpy() for c in ("a", "b")]
    keys, w = df.episode_index.to_numpy(), df.w.to_numpy()
    whole_index = GroupIndex.from_keys(keys)
    whole = grouped_moments(cols, whole_index, w)
    rng = np.random.default_rng(9)
    cuts = np.sort(rng.choice(np.arange(1, len(df)), 12, replace=False))
    merged: GroupedMoments | None = None
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(df)], strict=True):
        idx = GroupIndex.from_keys(keys[lo:hi])
        part = GroupedMoments(idx.keys, grouped_moments([c[lo:hi] for c in cols], idx, w[lo:hi]))
        merged = part if merged is None else merged.merge(part)
    assert merged is not None and np.array_equal(merged.keys, whole_index.keys)
    assert np.array_equal(merged.moments.count, whole.count)
    np.testing.assert_allclose(merged.moments.mean, whole.mean, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(merged.moments.m2, whole.m2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged.moments.weight, whole.weight, rtol=1e-13)


# --------------------------------------------------------------------------------------------
# fit --by / --weights from files (CLI and Python), chunk-size independence, merges


@pytest.fixture
def lerobot(tmp_path):
    df = _frame()
    return df, _parquet(df, tmp_path / "episodes.parquet")


@pytest.mark.parametrize("chunk", ["600", "50000"])
def test_fit_by_equals_pandas_and_pooled_equals_numpy(lerobot, tmp_path, chunk):
    df, path = lerobot
    out = tmp_path / "stats.json"
    r = _run(["fit", path, "--by", "episode_index", "--chunk-size", chunk, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "episode_index (the --by column)" in r.stderr
    assert "40 groups" in r.stderr
    doc = json.loads(out.read_text())
    cols = ["a", "b", "c", "w"]
    assert doc["features"] == cols and doc["by"]["column"] == "episode_index"
    keys, mean, var, lo, hi, count = _pandas_groups(df, "episode_index", cols)
    assert doc["by"]["keys"] == keys.tolist()
    got = {k: np.array(doc["by"][k], dtype=float) for k in ("mean", "var", "min", "max", "count")}
    np.testing.assert_allclose(got["mean"], mean, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(got["var"], var, rtol=1e-9, atol=1e-12)
    assert np.array_equal(got["min"], lo) and np.array_equal(got["max"], hi)
    assert np.array_equal(got["count"], count)
    x = df[cols].to_numpy(np.float64)
    np.testing.assert_allclose(doc["mean"], np.nanmean(x, axis=0), rtol=1e-13)
    np.testing.assert_allclose(doc["var"], np.nanvar(x, axis=0), rtol=1e-10)


@pytest.mark.parametrize("chunk", [600, None])
def test_fit_by_pooled_statistics_equal_numpy_and_the_plain_fit(lerobot, chunk):
    """With ``--by`` the pooled statistics are merged from the groups' (no pass of their own
    over the rows): not bit for bit a plain fit's, but as exact against numpy float64
    two-pass. ``chunk=None``: chunks large enough for the column-by-column kernel."""
    df, path = lerobot
    plain = normstat.fit(path, exclude=["episode_index"], chunk_size=chunk)
    grouped = normstat.fit(path, by="episode_index", chunk_size=chunk)
    x = df[["a", "b", "c", "w"]].to_numpy(np.float64)
    ok = ~np.isnan(x)
    mean = np.nanmean(x, axis=0)
    var = np.array([((x[ok[:, j], j] - mean[j]) ** 2).mean() for j in range(x.shape[1])])
    for s in (plain, grouped):
        assert np.array_equal(s.count, ok.sum(axis=0))
        assert np.array_equal(s.min, np.nanmin(x, axis=0))
        assert np.array_equal(s.max, np.nanmax(x, axis=0))
        np.testing.assert_allclose(s.mean, mean, rtol=1e-13)
        np.testing.assert_allclose(s.var, var, rtol=1e-12)
    np.testing.assert_allclose(grouped.mean, plain.mean, rtol=1e-13)
    np.testing.assert_allclose(grouped.var, plain.var, rtol=1e-12)


def test_results_do_not_depend_on_the_chunk_size(lerobot):
    _, path = lerobot
    fits = [
        normstat.fit(path, by="episode_index", weights="w", chunk_size=c) for c in (97, 1000, None)
    ]
    base = fits[0].by_group()
    for s in fits[1:]:
        g = s.by_group()
        assert np.array_equal(g.count, base.count)
        np.testing.assert_allclose(g.mean, base.mean, rtol=1e-13, atol=1e-9)
        np.testing.assert_allclose(g.var, base.var, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s.var, fits[0].var, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# the column kernel (chunks of COLUMN_MIN_ROWS rows or more): groups in one read, the pooled
# statistics merged from the groups, the values checked on the way


def _offset_frame(n: int = 70_000, groups: int = 300, seed: int = 11) -> pd.DataFrame:
    """Groups at ``|mean| / std = 1e6`` (each around its own centre), NaN in ``a``, a group
    whose first row lies 50 standard deviations from its mean, float32 ``b`` with a trend,
    weights with zeros."""
    rng = np.random.default_rng(seed)
    key = np.sort(rng.integers(0, groups, n))
    centre = 1e6 + rng.normal(0, 1e3, groups)
    a = centre[key] + rng.normal(0, 1, n)
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    a[first[5]] = centre[key[first[5]]] + 50.0  # summed again from its mean
    a[rng.random(n) < 0.01] = np.nan
    a[first[7]] = np.nan  # a group whose first row is NaN
    b = (rng.normal(0, 1, n) + 3 * key + np.arange(n) / n).astype(np.float32)
    w = rng.random(n) * 3
    w[rng.random(n) < 0.05] = 0.0
    return pd.DataFrame({"episode_index": key, "a": a, "b": b, "w": w})


def _two_pass(x: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """numpy float64 two-pass mean and variance per column, NaN skipped (weighted: numpy's
    ``average``, rows of weight 0 skipped)."""
    if w is not None:
        return _weighted_reference(x, w)
    mean = np.nanmean(x, axis=0)
    var = np.array([np.nanmean((x[:, j] - mean[j]) ** 2) for j in range(x.shape[1])])
    return mean, var


@pytest.fixture(scope="module")
def offset_file(tmp_path_factory):
    df = _offset_frame()
    return df, _parquet(df, tmp_path_factory.mktemp("offset") / "o.parquet", 10_000)


@pytest.mark.parametrize("chunk", [20_000, None])
@pytest.mark.parametrize("weighted", [False, True])
def test_column_kernel_by_group_at_a_large_offset_equals_numpy(offset_file, chunk, weighted):
    from normstat.engine.task import COLUMN_MIN_ROWS

    assert chunk is None or chunk >= COLUMN_MIN_ROWS
    df, path = offset_file
    cols = ["a", "b"]
    wcol = "w" if weighted else None
    s = normstat.fit(path, by="episode_index", weights=wcol, columns=cols, chunk_size=chunk)
    x = df[cols].to_numpy(np.float64)
    w = df.w.to_numpy() if weighted else None
    counted = ~np.isnan(x) & ((w > 0)[:, None] if weighted else True)
    # the pooled statistics, merged from the groups', against numpy two-pass on all the rows
    mean, var = _two_pass(x, w)
    assert np.array_equal(s.count, counted.sum(axis=0))
    np.testing.assert_allclose(s.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(s.var, var, rtol=1e-12)
    assert np.array_equal(s.min, [x[counted[:, j], j].min() for j in range(2)])
    assert np.array_equal(s.max, [x[counted[:, j], j].max() for j in range(2)])
    # each group against numpy two-pass on its rows
    g = s.by_group()
    keys = df.episode_index.to_numpy()
    assert np.array_equal(s.group_keys, np.unique(keys))
    for i, k in enumerate(s.group_keys):
        rows = keys == k
        gm, gv = _two_pass(x[rows], None if w is None else w[rows])
        assert np.array_equal(g.count[i], counted[rows].sum(axis=0))
        np.testing.assert_allclose(g.mean[i], gm, rtol=1e-13)
        np.testing.assert_allclose(g.var[i], gv, rtol=1e-10)
    # a witness that the groups are hard: E[x^2] - E[x]^2 in float64 loses a group's variance
    a = x[(keys == s.group_keys[0]) & ~np.isnan(x[:, 0]), 0]
    naive = (a * a).mean() - a.mean() ** 2
    assert abs(naive - a.var()) > 1e-5 * a.var()  # 6.6e-5 on this seed
    assert abs(g.var[0, 0] - a.var()) < 1e-10 * a.var() or weighted


@pytest.mark.parametrize("chunk", [20_000, None])
def test_column_kernel_weights_alone_equal_numpy_and_scikit_learn(offset_file, chunk):
    """``--weights`` without ``--by``: the weighted kernel's one group spans many blocks of
    rows (sums added across them); no unweighted pass before it."""
    df, path = offset_file
    s = normstat.fit(path, weights="w", columns=["a", "b"], chunk_size=chunk)
    x, w = df[["a", "b"]].to_numpy(np.float64), df.w.to_numpy()
    mean, var = _weighted_reference(x, w)
    counted = ~np.isnan(x) & (w > 0)[:, None]
    assert np.array_equal(s.count, counted.sum(axis=0))
    np.testing.assert_allclose(s.moments.weight, [w[counted[:, j]].sum() for j in range(2)])
    np.testing.assert_allclose(s.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(s.var, var, rtol=1e-12)
    assert np.array_equal(s.min, [x[counted[:, j], j].min() for j in range(2)])
    assert np.array_equal(s.max, [x[counted[:, j], j].max() for j in range(2)])
    ok = ~np.isnan(x[:, 1])
    sk = sklearn_pre.StandardScaler().fit(x[ok, 1:], sample_weight=w[ok])
    np.testing.assert_allclose(s.var[1], sk.var_[0], rtol=1e-9)


def test_column_kernel_results_do_not_depend_on_the_chunk_size(offset_file):
    _, path = offset_file
    fits = [normstat.fit(path, by="episode_index", chunk_size=c) for c in (17_000, 45_000, None)]
    base = fits[-1]
    for s in fits[:-1]:
        assert np.array_equal(s.count, base.count)
        np.testing.assert_allclose(s.mean, base.mean, rtol=1e-14)
        np.testing.assert_allclose(s.var, base.var, rtol=1e-12)
        g, h = s.by_group(), base.by_group()
        assert np.array_equal(g.count, h.count)
        np.testing.assert_allclose(g.mean, h.mean, rtol=1e-14)
        np.testing.assert_allclose(g.var, h.var, rtol=1e-10)


@pytest.mark.parametrize("flags", [{"by": "episode_index"}, {"weights": "w"}])
def test_column_kernel_names_the_row_of_a_forbidden_value(tmp_path, flags):
    """No pooled pass checks the values any more: the group kernel's sums see a NaN or an inf,
    and the error still names its row and feature."""
    df = _offset_frame(n=40_000)
    df["a"] = df["a"].fillna(0.0)
    df.loc[33_333, "b"] = np.inf
    path = _parquet(df, tmp_path / "inf.parquet", 10_000)
    with pytest.raises(DataError, match=r"infinite value at row 33333, feature b"):
        normstat.fit(path, columns=["a", "b"], **flags)
    df.loc[33_333, "b"] = 1.0
    df.loc[21_000, "a"] = np.nan
    path = _parquet(df, tmp_path / "nan.parquet", 10_000)
    with pytest.raises(DataError, match=r"NaN at row 21000, feature a"):
        normstat.fit(path, columns=["a", "b"], nan="error", **flags)
    s = normstat.fit(path, columns=["a", "b"], **flags)  # skipped under the default policy
    assert s.count[0] == (len(df) - 1 if "by" in flags else (df.w > 0).sum() - (df.w[21_000] > 0))


def test_fit_weights_equals_scikit_learn(lerobot, tmp_path):
    df, path = lerobot
    out = tmp_path / "w.npz"
    r = _run(["fit", path, "--weights", "w", "--exclude", "episode_index", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "weighted by column 'w'" in r.stderr
    s = normstat.load(out)
    assert s.weights == "w" and s.features == ["a", "b", "c"]
    x = df[["a", "b", "c"]].to_numpy(np.float64)
    sk = sklearn_pre.StandardScaler().fit(x, sample_weight=df.w.to_numpy())
    np.testing.assert_allclose(s.mean, sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(s.var, sk.var_, rtol=1e-9)
    mean, var = _weighted_reference(x, df.w.to_numpy())
    np.testing.assert_allclose(s.var, var, rtol=1e-10)


def test_by_and_weights_together_equal_per_group_weighted_numpy(lerobot):
    df, path = lerobot
    s = normstat.fit(path, by="episode_index", weights="w", columns=["a", "b"], chunk_size=700)
    g = s.by_group()
    for i, key in enumerate(s.group_keys):
        rows = df[df.episode_index == key]
        mean, var = _weighted_reference(rows[["a", "b"]].to_numpy(np.float64), rows.w.to_numpy())
        np.testing.assert_allclose(g.mean[i], mean, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(g.var[i], var, rtol=1e-9, atol=1e-12)


def test_merge_of_shards_fitted_by_group_and_weighted_equals_the_whole(lerobot, tmp_path):
    df, path = lerobot
    cut = [0, 1700, 4100, len(df)]
    shards = []
    for i in range(3):
        p = _parquet(df.iloc[cut[i] : cut[i + 1]], tmp_path / f"part{i}.parquet", 333)
        out = tmp_path / f"part{i}.json"
        r = _run(["fit", p, "--by", "episode_index", "--weights", "w", "-q", "-o", str(out)])
        assert r.exit_code == 0, r.output
        shards.append(str(out))
    merged = tmp_path / "merged.json"
    assert _run(["merge", *shards, "-q", "-o", str(merged)]).exit_code == 0
    whole = normstat.fit(path, by="episode_index", weights="w")
    m = normstat.load(merged)
    assert m.by == "episode_index" and m.weights == "w"
    assert np.array_equal(m.group_keys, whole.group_keys)
    np.testing.assert_allclose(m.by_group().mean, whole.by_group().mean, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(m.by_group().var, whole.by_group().var, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.var, whole.var, rtol=1e-12)


def test_merge_refuses_parts_grouped_or_weighted_differently(lerobot, tmp_path):
    _, path = lerobot
    a = normstat.fit(path, by="episode_index", weights="w", columns=["a"])
    b = normstat.fit(path, by="episode_index", columns=["a"])
    with pytest.raises(ArtifactError, match="weights"):
        normstat.merge([a, b], allow_overlap=True)


def test_string_keys_from_csv(tmp_path):
    rng = np.random.default_rng(4)
    spk = rng.choice(np.array(["alice", "bob", "carol", "dave"]), 900)
    df = pd.DataFrame({"speaker": spk, "f0": rng.normal(120, 20, 900), "f1": rng.normal(size=900)})
    path = tmp_path / "speech.csv"
    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), path)
    s = normstat.fit(str(path), by="speaker", chunk_size=100)
    keys, mean, var, *_ = _pandas_groups(df, "speaker", ["f0", "f1"])
    assert s.group_keys.tolist() == keys.tolist()
    np.testing.assert_allclose(s.by_group().mean, mean, rtol=1e-13)
    np.testing.assert_allclose(s.by_group().var, var, rtol=1e-10)
    for suffix in ("json", "npz"):
        normstat.save(s, tmp_path / f"s.{suffix}")
        back = normstat.load(tmp_path / f"s.{suffix}")
        assert back.group_keys.tolist() == keys.tolist()
        assert np.array_equal(back.by_group().mean, s.by_group().mean)


def test_in_memory_api_equals_the_file_fit(lerobot):
    df, path = lerobot
    f = normstat.fit(path, by="episode_index", weights="w", columns=["a", "b"])
    m = normstat.fit_arrays(df[["a", "b", "episode_index", "w"]], by="episode_index", weights="w")
    assert m.features == ["a", "b"]
    np.testing.assert_allclose(m.by_group().mean, f.by_group().mean, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(m.var, f.var, rtol=1e-12)
    acc = normstat.Accumulator()
    x = df[["a", "b"]].to_numpy()
    for lo in range(0, len(df), 1000):
        sl = slice(lo, lo + 1000)
        acc.update(x[sl], by=df.episode_index.to_numpy()[sl], weights=df.w.to_numpy()[sl])
    np.testing.assert_allclose(acc.result().by_group().var, f.by_group().var, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------
# errors and honest edges


def test_a_negative_weight_is_an_error_naming_the_row(tmp_path):
    df = _frame(n=2000)
    df.loc[1234, "w"] = -0.5
    path = _parquet(df, tmp_path / "neg.parquet")
    r = _run(["fit", path, "--weights", "w", "--chunk-size", "300"])
    assert r.exit_code == 1
    assert "row 1234" in r.stderr and "non-negative" in r.stderr
    with pytest.raises(DataError, match="row 1234"):
        normstat.fit(path, weights="w")
    with pytest.raises(DataError, match="row 7"):
        normstat.fit_arrays(np.ones((10, 2)), weights=np.r_[np.ones(7), np.nan, np.ones(2)])


def test_a_null_weight_or_key_is_an_error_naming_the_row(tmp_path):
    t = pa.table(
        {
            "k": pa.array([1, 1, None, 2], pa.int64()),
            "x": [1.0, 2.0, 3.0, 4.0],
            "w": pa.array([1.0, None, 1.0, 1.0]),
        }
    )
    path = tmp_path / "nulls.parquet"
    pq.write_table(t, path)
    with pytest.raises(DataError, match="row 2"):
        normstat.fit(str(path), by="k", columns=["x"])
    with pytest.raises(DataError, match="row 1"):
        normstat.fit(str(path), weights="w", columns=["x"])


def test_zero_total_weight_gives_null_statistics_and_says_so(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, np.nan, 5.0], "w": [0.0, 2.0, 0.0]})
    path = _parquet(df, tmp_path / "zero.parquet")
    out = tmp_path / "z.json"
    r = _run(["fit", path, "--weights", "w", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "no value of positive weight" in r.stderr
    doc = json.loads(out.read_text())
    assert doc["count"] == [1, 0] and doc["mean"] == [2.0, None] and doc["var"] == [0.0, None]
    assert doc["weights"] == {"column": "w", "sum": [2.0, 0.0]}


def test_by_and_weights_need_a_table_and_are_not_features(tmp_path, lerobot):
    _, path = lerobot
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones((4, 2)))
    r = _run(["fit", str(npy), "--by", "k"])
    assert r.exit_code == 2 and "needs a table source" in r.stderr
    r = _run(["fit", path, "--by", "nope"])
    assert r.exit_code != 0 and "no column 'nope' (--by)" in r.stderr
    r = _run(["fit", path, "--columns", "a,w", "--weights", "w"])
    assert r.exit_code == 2 and "also named in --columns" in r.stderr
    r = _run(["fit", path, "--by", "a"])
    assert r.exit_code == 1 and "group keys must be" in r.stderr
    with pytest.raises(UsageError, match="same column"):
        normstat.fit(path, by="w", weights="w")
    with pytest.raises(UsageError, match="not weighted yet"):
        normstat.fit(path, weights="w", quantiles="robust")


# --------------------------------------------------------------------------------------------
# apply --by: per-group standardization (per-speaker CMVN)


def _zscore_by_group(df: pd.DataFrame, key: str, cols: list[str]) -> np.ndarray:
    x = df[cols].astype(np.float64)
    g = x.groupby(df[key])
    return ((x - g.transform("mean")) / g.transform(lambda s: s.std(ddof=0))).to_numpy()


@pytest.mark.parametrize("suffix", ["parquet", "npy"])
def test_apply_by_standardizes_each_row_with_its_group(lerobot, tmp_path, suffix):
    df, path = lerobot
    stats = tmp_path / "s.json"
    assert (
        _run(
            ["fit", path, "--by", "episode_index", "--columns", "a,b", "-q", "-o", str(stats)]
        ).exit_code
        == 0
    )
    out = tmp_path / f"out.{suffix}"
    r = _run(
        [
            "apply",
            str(stats),
            path,
            "-o",
            str(out),
            "--by",
            "episode_index",
            "--dtype",
            "float64",
            "--chunk-size",
            "700",
        ]
    )
    assert r.exit_code == 0, r.output
    want = _zscore_by_group(df, "episode_index", ["a", "b"])
    got = pd.read_parquet(out)[["a", "b"]].to_numpy() if suffix == "parquet" else np.load(out)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    if suffix == "parquet":  # the other columns pass through
        assert pd.read_parquet(out).episode_index.tolist() == df.episode_index.tolist()
    y = normstat.transform(df, normstat.load(stats), by="episode_index", dtype="float64")
    np.testing.assert_allclose(y, want, rtol=1e-9, atol=1e-9)


def test_apply_by_an_unseen_group_is_an_error_or_the_pooled_fallback(lerobot, tmp_path):
    df, path = lerobot
    fitted = df[df.episode_index != 17]
    train = _parquet(fitted, tmp_path / "train.parquet")
    stats = tmp_path / "s.json"
    assert (
        _run(
            ["fit", train, "--by", "episode_index", "--columns", "a", "-q", "-o", str(stats)]
        ).exit_code
        == 0
    )
    out = tmp_path / "o.parquet"
    r = _run(["apply", str(stats), path, "-o", str(out), "--by", "episode_index"])
    assert r.exit_code == 1 and "group 17" in r.stderr and "not seen when fitting" in r.stderr
    assert not out.exists()
    r = _run(
        [
            "apply",
            str(stats),
            path,
            "-o",
            str(out),
            "--by",
            "episode_index",
            "--by-fallback",
            "pooled",
            "--dtype",
            "float64",
        ]
    )
    assert r.exit_code == 0, r.output
    assert "pooled statistics" in r.stderr
    got = pd.read_parquet(out).a.to_numpy()
    s = normstat.load(stats)
    rows = (df.episode_index == 17).to_numpy()
    pooled = (df.a.to_numpy()[rows] - s.mean[0]) / s.std[0]
    np.testing.assert_allclose(got[rows], pooled, rtol=1e-12, equal_nan=True)
    want = _zscore_by_group(fitted, "episode_index", ["a"])[:, 0]
    np.testing.assert_allclose(got[~rows], want, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_apply_by_needs_statistics_fitted_by_group(lerobot, tmp_path):
    _, path = lerobot
    stats = tmp_path / "plain.json"
    assert _run(["fit", path, "--columns", "a", "-q", "-o", str(stats)]).exit_code == 0
    r = _run(
        ["apply", str(stats), path, "-o", str(tmp_path / "o.parquet"), "--by", "episode_index"]
    )
    assert r.exit_code == 1 and "not fitted by group" in r.stderr


# --------------------------------------------------------------------------------------------
# show --by, and the artifact


def test_show_by_ranks_first_the_group_that_moves_the_pooled_std_most(tmp_path):
    rng = np.random.default_rng(8)
    key = np.repeat(np.arange(30), 100)
    x = rng.normal(0, 1, 3000)
    x[key == 12] += 40  # one episode far off: it widens the pooled std most
    df = pd.DataFrame({"episode_index": key, "x": x})
    path = _parquet(df, tmp_path / "e.parquet")
    stats = tmp_path / "s.json"
    assert _run(["fit", path, "--by", "episode_index", "-q", "-o", str(stats)]).exit_code == 0
    r = _run(["show", "--by", str(stats)])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[2].split()
    assert first[0] == "12"
    without = np.std(x[key != 12])
    change = (np.std(x) - without) / np.std(x) * 100
    assert first[3] == f"{change:+.3g}%"
    assert "by column 'episode_index': 30 groups" in _run(["show", str(stats)]).output


def test_artifact_by_section_is_checked_on_load(lerobot, tmp_path):
    _, path = lerobot
    out = tmp_path / "s.json"
    normstat.save(normstat.fit(path, by="episode_index", columns=["a"]), out)
    doc = json.loads(out.read_text())
    doc["by"]["count"][0][0] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="by"):
        normstat.load(bad)
    doc = json.loads(out.read_text())
    doc["by"]["keys"] = doc["by"]["keys"][::-1]
    bad.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="sorted"):
        normstat.load(bad)


def test_grouped_and_weighted_fit_on_dask_equals_the_local_engine(lerobot, tmp_path):
    """Tasks of a few row groups each, on a real two-process cluster: the same bits; and
    apply --by there writes what the local engine writes."""
    distributed = pytest.importorskip("distributed")
    _, path = lerobot
    local = normstat.fit(path, by="episode_index", weights="w", chunk_size=500)
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        for engine, out in (("local", "l.npy"), ("dask", "d.npy")):
            normstat.apply(
                local,
                path,
                str(tmp_path / out),
                by="episode_index",
                chunk_size=500,
                engine=engine,
                scheduler=cluster.scheduler_address if engine == "dask" else None,
            )
        assert np.array_equal(
            np.load(tmp_path / "l.npy"), np.load(tmp_path / "d.npy"), equal_nan=True
        )
        remote = normstat.fit(
            path,
            by="episode_index",
            weights="w",
            chunk_size=500,
            task_size=1500 * 40,
            engine="dask",
            scheduler=cluster.scheduler_address,
        )
    for k in ("count", "mean", "m2", "min", "max"):
        assert np.array_equal(getattr(local, k), getattr(remote, k), equal_nan=True), k
        a, b = getattr(local.by_group(), k), getattr(remote.by_group(), k)
        assert np.array_equal(a, b, equal_nan=True), k
    assert np.array_equal(local.moments.weight, remote.moments.weight)


def test_apply_by_to_hdf5_records_the_column_not_the_megabytes(lerobot, tmp_path):
    h5py = pytest.importorskip("h5py")
    df, path = lerobot
    stats = normstat.fit(path, by="episode_index", columns=["a", "b"])
    out = tmp_path / "out.h5"
    normstat.apply(stats, path, str(out), by="episode_index", dtype="float64")
    with h5py.File(out) as f:
        (name,) = list(f)
        ds = f[name]
        assert ds.attrs["normstat_by"] == "episode_index"
        assert "by" not in json.loads(ds.attrs["normstat_stats"])
        want = _zscore_by_group(df, "episode_index", ["a", "b"])
        np.testing.assert_allclose(ds[...], want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "keys",
    [
        pa.array([True, False, True, True, False, False]),
        pa.array(["b", "a", "b", "c", "a", "c"]).dictionary_encode(),
        pa.array([5, 3, 5, 9, 3, 9], pa.int8()),
    ],
    ids=["bool", "dictionary", "int8-unsorted"],
)
def test_key_types_group_as_pandas_does(tmp_path, keys):
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    pq.write_table(pa.table({"k": keys, "x": x}), tmp_path / "k.parquet")
    s = normstat.fit(str(tmp_path / "k.parquet"), by="k")
    df = pd.DataFrame(
        {"k": keys.to_pandas().astype(object if keys.type != pa.int8() else int), "x": x}
    )
    ref = df.groupby("k").x.agg(["mean", lambda v: v.var(ddof=0)])
    assert [str(k) for k in s.group_keys] == [
        str(int(k)) if isinstance(k, bool) else str(k) for k in ref.index
    ]
    np.testing.assert_allclose(s.by_group().mean[:, 0], ref["mean"], rtol=1e-15)
    np.testing.assert_allclose(s.by_group().var[:, 0], ref["<lambda_0>"], rtol=1e-14)


def test_groups_benchmark_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "groups.py"
    done = subprocess.run(
        [sys.executable, str(script), "--small", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "| --by episode_index, -o stats.json |" in done.stdout
    assert "200 episodes" in done.stdout


def test_accumulators_by_group_merge_exactly_and_refuse_mixing():
    rng = np.random.default_rng(21)
    x, k, w = rng.normal(3, 2, (900, 2)), rng.integers(0, 9, 900), rng.random(900)
    whole = normstat.fit_arrays(x, by=k, weights=w)
    a, b, empty = normstat.Accumulator(), normstat.Accumulator(), normstat.Accumulator()
    a.update(x[:400], by=k[:400], weights=w[:400])
    b.update(x[400:], by=k[400:], weights=w[400:])
    merged = empty.merge(a).merge(b).result()
    assert merged.by == "<array>" and merged.weights == "<array>"
    np.testing.assert_allclose(merged.by_group().var, whole.by_group().var, rtol=1e-12)
    plain = normstat.Accumulator().update(x[:10])
    with pytest.raises(UsageError, match="groups or weights"):
        plain.merge(a)
    with pytest.raises(UsageError, match="the first gave"):
        plain.update(x[10:20], weights=w[10:20])
    with pytest.raises(UsageError, match="not weighted yet"):
        normstat.fit_arrays(x, weights=w, quantiles="robust")


def test_a_table_of_no_rows_records_no_group_and_round_trips(tmp_path):
    empty = pa.table(
        {
            "k": pa.array([], pa.int64()),
            "x": pa.array([], pa.float64()),
            "w": pa.array([], pa.float64()),
        }
    )
    pq.write_table(empty, tmp_path / "e.parquet")
    with pytest.warns(NormstatWarning, match="no rows"):
        s = normstat.fit(str(tmp_path / "e.parquet"), by="k", weights="w")
    for suffix in ("json", "npz"):
        normstat.save(s, tmp_path / f"s.{suffix}")
        back = normstat.load(tmp_path / f"s.{suffix}")
        assert back.group_keys.size == 0 and back.by_group().mean.shape == (0, 1)
        assert back.count.tolist() == [0] and back.moments.weight.tolist() == [0.0]


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_show_of_a_large_by_artifact_reads_it_whole(tmp_path, monkeypatch, suffix):
    """``show`` streams artifacts above ``STREAM_BYTES`` a block of features at a time; the
    ``by`` section is checked with the whole, so such an artifact is loaded whole, and the
    pooled rows shown equal numpy's."""
    from normstat import artifact

    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(5.0, 2.0, n)
    pq.write_table(pa.table({"ep": np.repeat(np.arange(300), 10), "x": x}), tmp_path / "g.parquet")
    out = tmp_path / f"s{suffix}"
    r = CliRunner().invoke(main, ["fit", str(tmp_path / "g.parquet"), "--by", "ep", "-o", str(out)])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(artifact, "STREAM_BYTES", 0)
    r = CliRunner().invoke(main, ["show", str(out)])
    assert r.exit_code == 0, r.output
    assert "300 groups" in r.output
    row = next(line for line in r.output.splitlines() if line.startswith("x "))
    assert float(row.split()[3]) == pytest.approx(x.mean(), rel=1e-4)
    assert float(row.split()[4]) == pytest.approx(x.std(), rel=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64])
def test_by_with_quantiles_keeps_the_groups_on_every_kernel_path(dtype):
    """Integer data with ``quantiles`` is reduced by one counting read; the groups of ``by``
    must be kept on that path too (they were dropped for uint8 arrays)."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 255, (5000, 2)).astype(dtype)
    keys = np.repeat(np.arange(50), 100)
    s = normstat.fit_arrays(x, by=keys, quantiles=[0.5])
    ref = pd.DataFrame(x.astype(np.float64)).groupby(keys).agg(["mean", "var"])
    g = s.by_group()
    np.testing.assert_allclose(g.mean, ref.xs("mean", axis=1, level=1).values, rtol=1e-12)
    np.testing.assert_allclose(g.var, ref.xs("var", axis=1, level=1).values * 99 / 100, rtol=1e-12)
    np.testing.assert_array_equal(s.quantiles.ravel(), np.quantile(x, 0.5, axis=0))


# --------------------------------------------------------------------------------------------
# combinations: --by with --rescale, --by / --weights with --checkpoint / --resume


@pytest.mark.parametrize("scale", ["1/255", "-2"])
def test_by_with_rescale_describes_each_group_of_the_scaled_values(lerobot, tmp_path, scale):
    df, path = lerobot
    out = tmp_path / "scaled.npz"
    r = _run(["fit", path, "--by", "episode_index", "--rescale", scale, "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    s = normstat.load(out)
    factor = 1 / 255 if scale == "1/255" else -2.0
    cols = ["a", "b", "c", "w"]
    scaled = df.astype({c: np.float64 for c in cols})
    scaled[cols] = scaled[cols] * factor
    keys, mean, var, lo, hi, count = _pandas_groups(scaled, "episode_index", cols)
    g = s.by_group()
    assert s.rescale == factor and g.rescale == factor and s.by == "episode_index"
    assert np.array_equal(s.group_keys, keys) and np.array_equal(g.count, count)
    np.testing.assert_allclose(g.mean, mean, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.var, var, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.min, lo, rtol=1e-15)
    np.testing.assert_allclose(g.max, hi, rtol=1e-15)
    x = scaled[cols].to_numpy()
    np.testing.assert_allclose(s.mean, np.nanmean(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.var, np.nanvar(x, axis=0), rtol=1e-10)
    # apply --by rescales, then standardizes each row with its own group
    z = normstat.transform(df[cols], s, by=df.episode_index.to_numpy(), dtype=np.float64)
    expect = _zscore_by_group(scaled, "episode_index", cols)
    np.testing.assert_allclose(z, expect, rtol=1e-8, atol=1e-8)
