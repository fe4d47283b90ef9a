"""Quantiles against numpy's own ``numpy.quantile(method="linear")``: exact for small integers and
with ``--exact``, within 2**-7 relative otherwise; any split, merged in any order, gives the same
bits; robust scaling against scikit-learn's ``RobustScaler``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CrashAfter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normstat
from normstat import artifact
from normstat.api.combining import export, merge
from normstat.api.fitting import Accumulator, fit_arrays
from normstat.api.transforming import transform
from normstat.cli import main
from normstat.core.distances import distances
from normstat.core.exact import ExactSearch
from normstat.core.histogram import SketchSpec, chunk_sketch
from normstat.core.quantiles import KEEP_BITS, Sketch, key_values, ordered_keys
from normstat.errors import UsageError

LEVELS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
BOUND = 2.0**-KEEP_BITS  # the documented relative bound, 0.78%
PROFILE = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _reference(x: np.ndarray, levels=LEVELS) -> np.ndarray:
    """numpy's linear quantiles of each column's non-missing values, in float64."""
    cols = []
    for c in x.reshape(x.shape[0], -1).T:
        c = c[~np.isnan(c)] if c.dtype.kind == "f" else c
        cols.append(np.quantile(c, levels) if c.size else np.full(len(levels), np.nan))
    return np.stack(cols, axis=1)


def _fit(x: np.ndarray, levels=LEVELS, **kw) -> np.ndarray:
    return fit_arrays(x, quantiles=levels, **kw).quantiles.reshape(len(levels), -1)


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261204)
    bimodal = np.concatenate([rng.normal(-5, 1, 30_000), rng.normal(8, 0.5, 20_000)])
    return {
        "normal": rng.normal(3.0, 2.0, (50_000, 3)),
        "lognormal": rng.lognormal(0.0, 2.0, (50_000, 2)),
        "bimodal": rng.permutation(bimodal).reshape(-1, 2),
        "negative": -rng.lognormal(0.0, 1.0, (20_000, 2)),
        "float32": rng.normal(0, 1, (20_000, 3)).astype(np.float32),
    }


DATA = _data()


@pytest.mark.parametrize("name", sorted(DATA))
def test_float_quantiles_within_bound(name):
    x = DATA[name]
    got, want = _fit(x), _reference(x.astype(np.float64))
    assert (np.abs(got - want) <= BOUND * np.abs(want)).all()


@pytest.mark.parametrize("name", sorted(DATA))
def test_exact_mode_equals_numpy_bit_for_bit(name, tmp_path):
    x = DATA[name].astype(np.float64)
    path = tmp_path / "x.npy"
    np.save(path, x)
    stats = normstat.fit(str(path), quantiles=LEVELS, exact=True, chunk_size=4096)
    assert (stats.quantiles.reshape(len(LEVELS), -1) == _reference(x)).all()


@pytest.mark.parametrize(
    "dtype, lo, hi", [(np.uint8, 0, 256), (np.int16, -32768, 32768), (np.uint16, 0, 65536)]
)
def test_small_integers_are_exact(dtype, lo, hi):
    rng = np.random.default_rng(1)
    x = rng.integers(lo, hi, (30_000, 3)).astype(dtype)
    x[:, 2] = rng.integers(lo, lo + 3, 30_000)  # few distinct values: interpolation matters
    assert (_fit(x) == _reference(x)).all()


def test_uint8_images_per_channel(digits):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (64, 16, 12, 3), dtype=np.uint8)
    images[..., 1] //= 7
    got = fit_arrays(images, quantiles=LEVELS).quantiles
    assert got.shape == (len(LEVELS), 3)
    assert (got == _reference(images.reshape(-1, 3))).all()
    per_pixel = fit_arrays(digits, axis=(1, 2), quantiles=LEVELS).quantiles
    assert (per_pixel.reshape(len(LEVELS), -1) == _reference(digits.reshape(len(digits), -1))).all()


def test_nan_is_skipped_and_empty_features_are_null():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10_000, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 2] = np.nan
    got, want = _fit(x), _reference(x)
    assert np.isnan(got[:, 2]).all()
    assert (np.abs(got[:, :2] - want[:, :2]) <= BOUND * np.abs(want[:, :2])).all()


def test_constant_zero_and_zero_crossing_are_exact():
    x = np.full((1000, 3), -2.5)
    x[:, 1] = np.r_[np.full(500, -1e-3), np.full(500, 7e-4)]  # median between the two signs
    x[:, 2] = np.r_[np.zeros(600), np.linspace(1, 2, 400)]  # ReLU-like: zero has its own bucket
    got, want = _fit(x, [0.0, 0.3, 0.5, 1.0]), _reference(x, [0.0, 0.3, 0.5, 1.0])
    assert (got == want).all()


def test_negative_zero_counts_as_zero():
    x = np.array([[-0.0], [0.0], [1.0], [-1.0], [0.0]])
    assert (_fit(x) == _reference(x)).all()


def test_keys_preserve_order_and_round_trip():
    rng = np.random.default_rng(4)
    v = np.sort(np.r_[rng.normal(size=1000) * 10.0 ** rng.integers(-300, 300, 1000), 0.0])
    k = ordered_keys(v)
    assert (np.diff(k) > 0).all()
    assert (key_values(k) == v).all()


def test_glitch_case_two_million_values_and_three_outliers():
    rng = np.random.default_rng(5)
    x = np.r_[rng.normal(size=2_000_000), [1e6, 1e6, 1e6]].reshape(-1, 1)
    got, want = _fit(x), _reference(x)
    assert (np.abs(got - want) <= BOUND * np.abs(want)).all()
    assert abs(got[LEVELS.index(0.99), 0] - 2.326) < 0.02  # a 5000-bin min-max histogram: ~200


# --- determinism: any split, any merge order, any engine ---------------------------------------


@st.composite
def splits(draw):
    n = draw(st.integers(1, 3000))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    order = draw(st.permutations(range(len(cuts) + 1)))
    return n, cuts, order


@PROFILE
@given(splits(), st.sampled_from(["float64", "int16", "uint8"]))
def test_any_split_merged_in_any_order_gives_the_same_bits(split, dtype):
    n, cuts, order = split
    rng = np.random.default_rng(n)
    x = rng.normal(0, 300, (n, 2)) if dtype == "float64" else rng.integers(-99, 99, (n, 2))
    x = np.abs(x).astype(dtype) if dtype == "uint8" else x.astype(dtype)
    whole = chunk_sketch(x)
    parts = [chunk_sketch(p) for p in np.split(x, cuts)]
    merged = Sketch.empty(2)
    for i in order:
        merged = merged.merge(parts[i])
    for a, b in zip(whole.arrays().values(), merged.arrays().values(), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(whole.quantiles(LEVELS), merged.quantiles(LEVELS), equal_nan=True)


@settings(PROFILE, max_examples=8)
@given(st.integers(16, 5000), st.integers(1, 5))
def test_chunk_size_and_shards_do_not_matter(tmp_path_factory, chunk, shards):
    root = tmp_path_factory.mktemp("q")
    x = np.random.default_rng(6).lognormal(0, 1, (5000, 2)) - 1.0
    paths = []
    for i, part in enumerate(np.array_split(x, shards)):
        paths.append(str(root / f"p{i}.npy"))
        np.save(paths[-1], part)
    stats = normstat.fit(paths, quantiles=LEVELS, chunk_size=chunk, workers=2)
    base = fit_arrays(x, quantiles=LEVELS)
    assert np.array_equal(stats.quantiles, base.quantiles)


def test_merge_of_partial_artifacts_equals_the_whole(tmp_path):
    x = DATA["bimodal"]
    names = []
    for i, part in enumerate(np.array_split(x, 3)):
        names.append(str(tmp_path / f"part{i}.{'npz' if i else 'json'}"))
        np.save(tmp_path / f"p{i}.npy", part)
        artifact.save(normstat.fit(str(tmp_path / f"p{i}.npy"), quantiles=LEVELS), names[-1])
    whole = fit_arrays(x, quantiles=LEVELS)
    assert np.array_equal(merge(names[::-1]).quantiles, whole.quantiles)


def test_merge_of_exact_artifacts_says_the_merged_quantiles_are_bounded(tmp_path):
    """``--exact`` reads the data again; ``merge`` has only the parts' summaries. The merged
    quantiles of float data are within the bound of the whole's numpy values, and both stderr
    and the artifact say so (``quantiles_exact`` false, ``quantiles_relative_error`` 2^-7);
    integer parts stay exact, without a warning."""
    rng = np.random.default_rng(21)
    for x, error in ((DATA["lognormal"], BOUND), (rng.integers(0, 256, (9000, 3), np.uint8), 0.0)):
        names = []
        for i, part in enumerate(np.array_split(x, 2)):
            np.save(tmp_path / f"p{i}.npy", part)
            names.append(str(tmp_path / f"part{i}.json"))
            r = CliRunner().invoke(
                main,
                ["fit", str(tmp_path / f"p{i}.npy"), "--quantiles", "0.01,0.5,0.99", "--exact"]
                + ["-o", names[-1], "--force", "-q"],
            )
            assert r.exit_code == 0, r.output
            with open(names[-1]) as fp:
                assert json.load(fp)["quantiles_relative_error"] == 0.0
        out = str(tmp_path / "merged.json")
        r = CliRunner().invoke(main, ["merge", *names, "-o", out, "--force"])
        assert r.exit_code == 0, r.output
        with open(out) as fp:
            doc = json.load(fp)
        assert doc["quantiles_exact"] is False
        assert doc["quantiles_relative_error"] == error
        want = _reference(x, [0.01, 0.5, 0.99])
        got = np.asarray(doc["quantiles"], np.float64).reshape(3, -1)
        assert np.all(np.abs(got - want) <= error * np.abs(want))
        if error:
            assert "the merged ones are not" in r.stderr and "0.00781" in r.stderr
            assert not np.array_equal(got, want)  # the witness: really bounded, not exact
        else:
            assert "Warning" not in r.stderr


def test_artifact_with_edited_quantile_error_is_refused():
    doc = artifact.to_dict(fit_arrays(DATA["normal"], quantiles="robust"))
    assert doc["quantiles_relative_error"] == BOUND
    doc["quantiles_relative_error"] = 0.0
    with pytest.raises(normstat.ArtifactError, match="quantiles_relative_error"):
        artifact.from_dict(doc)


def test_accumulator_update_and_merge():
    x = DATA["normal"]
    a = Accumulator(quantiles="robust").update(x[:100]).update(x[100:30_000])
    b = Accumulator(quantiles="robust").update(x[30_000:])
    whole = fit_arrays(x, quantiles="robust")
    assert np.array_equal(b.merge(a).result().quantiles, whole.quantiles)


# --- the artifact -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["json", "npz"])
def test_artifact_round_trip(tmp_path, suffix):
    stats = fit_arrays(DATA["negative"], quantiles=LEVELS)
    path = str(tmp_path / f"s.{suffix}")
    artifact.save(stats, path)
    back = artifact.load(path)
    assert back.quantile_levels == tuple(LEVELS)
    assert np.array_equal(back.quantiles, stats.quantiles)


def test_artifact_with_edited_quantiles_is_refused(tmp_path):
    doc = artifact.to_dict(fit_arrays(DATA["normal"], quantiles="robust"))
    doc["quantiles"][1][0] += 1.0
    with pytest.raises(normstat.ArtifactError, match="quantiles"):
        artifact.from_dict(doc)
    doc = artifact.to_dict(fit_arrays(DATA["normal"], quantiles="robust"))
    doc["histogram"]["counts"][0] += 1
    with pytest.raises(normstat.ArtifactError, match="histogram"):
        artifact.from_dict(doc)


# --- apply and export ---------------------------------------------------------------------------


def test_robust_equals_sklearn_robust_scaler():
    from sklearn.preprocessing import RobustScaler

    rng = np.random.default_rng(7)
    x = rng.integers(-500, 500, (20_000, 4)).astype(np.int16)
    x[:, 3] = 9  # zero IQR: scale 1, as scikit-learn
    stats = fit_arrays(x, quantiles="robust")
    ref = RobustScaler().fit(x)
    np.testing.assert_allclose(
        transform(x, stats, method="robust", dtype=np.float64), ref.transform(x), rtol=1e-12
    )
    exported = export(stats, "sklearn-robust")
    np.testing.assert_allclose(exported["center_"], ref.center_, rtol=1e-12)
    np.testing.assert_allclose(exported["scale_"], ref.scale_, rtol=1e-12)


def test_robust_float_exact_equals_sklearn(tmp_path):
    from sklearn.preprocessing import RobustScaler

    x = DATA["lognormal"]
    np.save(tmp_path / "x.npy", x)
    stats = normstat.fit(str(tmp_path / "x.npy"), quantiles="robust", exact=True)
    y = transform(x, stats, method="robust", dtype=np.float64)
    np.testing.assert_allclose(y, RobustScaler().fit_transform(x), rtol=1e-12, atol=1e-12)


def test_quantile_method_maps_the_range_to_minus_one_one_and_clips():
    x = DATA["normal"]
    stats = fit_arrays(x, quantiles=[0.01, 0.99])
    q = stats.quantiles
    y = transform(q, stats, method="quantile", dtype=np.float64)
    np.testing.assert_allclose(y, [[-1.0] * 3, [1.0] * 3], atol=1e-12)
    y = transform(x, stats, method="quantile", clip=True, dtype=np.float64)
    assert y.min() == -1.0 and y.max() == 1.0
    back = transform(y, stats, method="quantile", inverse=True, dtype=np.float64)
    inside = (x >= q[0]) & (x <= q[1])
    np.testing.assert_allclose(back[inside], x[inside], rtol=1e-12)


def test_methods_without_fitted_quantiles_say_what_to_fit():
    stats = fit_arrays(DATA["normal"])
    with pytest.raises(UsageError, match="--quantiles 0.25,0.5,0.75"):
        transform(DATA["normal"], stats, method="robust")
    with pytest.raises(UsageError, match="clip"):
        transform(DATA["normal"], stats, method="zscore", clip=True)


# --- the command line ----------------------------------------------------------------------


def test_cli_fit_apply_export_show(tmp_path):
    x = np.random.default_rng(8).integers(0, 256, (500, 4, 4, 3)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    run = CliRunner().invoke
    stats = str(tmp_path / "s.json")
    r = run(main, ["fit", str(tmp_path / "x.npy"), "--quantiles", "robust", "-o", stats, "-q"])
    assert r.exit_code == 0, r.output
    with open(stats) as fp:
        doc = json.load(fp)
    assert doc["quantile_levels"] == [0.25, 0.5, 0.75]
    assert doc["quantiles"] == _reference(x.reshape(-1, 3), [0.25, 0.5, 0.75]).tolist()
    out = str(tmp_path / "y.npy")
    r = run(main, ["apply", stats, str(tmp_path / "x.npy"), "-o", out, "--method", "robust", "-q"])
    assert r.exit_code == 0, r.output
    r = run(main, ["export", stats, "--to", "sklearn-robust"])
    assert r.exit_code == 0 and "center_" in r.stdout
    r = run(main, ["show", stats])
    assert r.exit_code == 0 and "q50" in r.stdout, r.output


def test_cli_errors_are_one_line(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    run = CliRunner().invoke
    r = run(main, ["fit", str(tmp_path / "x.npy"), "--quantiles", "0.5,2"])
    assert r.exit_code == 2 and "[0, 1]" in r.stderr
    r = run(main, ["fit", str(tmp_path / "x.npy"), "--exact"])
    assert r.exit_code == 2 and "--quantiles" in r.stderr
    plain = str(tmp_path / "s.json")
    run(main, ["fit", str(tmp_path / "x.npy"), "-o", plain, "-q"])
    r = run(main, ["apply", plain, str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                   "--method", "quantile"])  # fmt: skip
    assert r.exit_code == 2 and "fit with --quantiles 0.01,0.99" in r.stderr


# --- distances between summaries (drift / diff --metric) ----------------------------------------


def _sketches(a: np.ndarray, b: np.ndarray):
    return fit_arrays(a, histogram=True).sketch, fit_arrays(b, histogram=True).sketch


def test_metrics_on_exact_summaries_equal_scipy():
    from scipy.stats import ks_2samp, wasserstein_distance

    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (20_000, 2)).astype(np.uint8)
    b = np.minimum(rng.integers(0, 256, (15_000, 2)) + rng.integers(0, 40, (15_000, 2)), 255)
    sa, sb = _sketches(a, b.astype(np.uint8))
    ks = distances(sa, sb, "ks")
    w = distances(sa, sb, "wasserstein")
    for f in range(2):
        np.testing.assert_allclose(ks[f], ks_2samp(a[:, f], b[:, f]).statistic, rtol=1e-12)
        np.testing.assert_allclose(w[f], wasserstein_distance(a[:, f], b[:, f]), rtol=1e-12)


def test_metrics_on_float_summaries_within_their_resolution():
    from scipy.stats import ks_2samp, wasserstein_distance

    rng = np.random.default_rng(10)
    a, b = rng.normal(0, 1, (30_000, 1)), rng.normal(0.2, 1.3, (20_000, 1))
    sa, sb = _sketches(a, b)
    ks_ref = ks_2samp(a[:, 0], b[:, 0]).statistic
    ks = distances(sa, sb, "ks")[0]
    assert ks_ref - 0.01 <= ks <= ks_ref  # misses at most the mass of one bucket
    w_ref = wasserstein_distance(a[:, 0], b[:, 0])
    bound = 2.0**-8 * (np.abs(a).mean() + np.abs(b).mean())
    assert abs(distances(sa, sb, "wasserstein")[0] - w_ref) <= bound


def test_psi_js_hellinger_against_direct_binning():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(11)
    a, b = rng.normal(0, 1, (50_000, 1)), rng.normal(0.5, 1, (50_000, 1))
    sa, sb = _sketches(a, b)
    edges = np.quantile(a[:, 0], np.linspace(0, 1, 11))
    pa = np.histogram(a[:, 0], edges)[0] / a.shape[0]
    pb = np.histogram(np.clip(b[:, 0], edges[0], edges[-1]), edges)[0] / b.shape[0]
    psi = np.sum((pb - pa) * np.log(pb / pa))
    assert abs(distances(sa, sb, "psi")[0] - psi) < 0.02 * psi
    edges = np.quantile(a[:, 0], np.linspace(0, 1, 101))
    pa = np.histogram(a[:, 0], edges)[0] / a.shape[0]
    pb = np.histogram(np.clip(b[:, 0], edges[0], edges[-1]), edges)[0] / b.shape[0]
    js = jensenshannon(pa, pb, base=2)
    assert abs(distances(sa, sb, "js")[0] - js) < 0.05 * js
    hell = np.sqrt(1 - np.sum(np.sqrt(pa * pb)))
    assert abs(distances(sa, sb, "hellinger")[0] - hell) < 0.05 * hell
    for metric in ("psi", "ks", "wasserstein", "js", "hellinger"):
        assert distances(sa, sa, metric)[0] == 0.0


def test_cli_diff_metric_threshold(tmp_path):
    rng = np.random.default_rng(12)
    np.save(tmp_path / "a.npy", rng.normal(0, 1, (20_000, 2)))
    b = rng.normal(0, 1, (20_000, 2))
    b[:, 1] = rng.standard_t(2, 20_000)  # same centre, other shape: moments barely see it
    np.save(tmp_path / "b.npy", b)
    run = CliRunner().invoke
    for name in ("a", "b"):
        args = [
            "fit",
            str(tmp_path / f"{name}.npy"),
            "--histogram",
            "-o",
            f"{tmp_path / name}.json",
        ]
        assert run(main, [*args, "-q"]).exit_code == 0
    r = run(main, ["diff", f"{tmp_path}/a.json", f"{tmp_path}/b.json", "--metric", "ks",
                   "--threshold", "0.03", "--json"])  # fmt: skip
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["metric"] == "ks" and doc["exceeding"] == ["[1]"]
    r = run(main, ["drift", f"{tmp_path}/a.json", str(tmp_path / "a.npy"), "--metric", "psi",
                   "--threshold", "0.001", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    plain = str(tmp_path / "plain.json")
    run(main, ["fit", str(tmp_path / "a.npy"), "-o", plain, "-q"])
    r = run(main, ["diff", plain, f"{tmp_path}/b.json", "--metric", "js"])
    assert r.exit_code == 2 and "--histogram" in r.stderr


# --- engines and tables -----------------------------------------------------------------------


def test_table_columns_of_mixed_types(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(13)
    cols = {
        "small": rng.integers(-300, 300, 5000).astype(np.int16),
        "wide": rng.normal(0, 5, 5000),
        "label": np.array(["x"] * 5000),
    }
    pq.write_table(pa.table(cols), tmp_path / "t.parquet", row_group_size=700)
    stats = normstat.fit(str(tmp_path / "t.parquet"), quantiles=LEVELS, exact=True, chunk_size=300)
    assert stats.features == ["small", "wide"]
    want = np.stack([np.quantile(cols[c], LEVELS) for c in ("small", "wide")], axis=1)
    assert (stats.quantiles == want).all()


def test_dask_engine_equals_local(tmp_path):
    pytest.importorskip("distributed")
    rng = np.random.default_rng(14)
    paths = []
    for i, n in enumerate((700, 300, 1100)):
        paths.append(str(tmp_path / f"p{i}.npy"))
        np.save(paths[-1], rng.lognormal(0, 1, (n, 3)) - 1.0)
    kw = {"quantiles": LEVELS, "chunk_size": 64, "task_size": 256}
    local = normstat.fit(paths, **kw)
    dask = normstat.fit(paths, engine="dask", workers=2, **kw)
    assert np.array_equal(local.quantiles, dask.quantiles)
    for a, b in zip(local.sketch.arrays().values(), dask.sketch.arrays().values(), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "kw",
    [
        {"quantiles": LEVELS},
        {"histogram": True},
        {"quantiles": LEVELS, "exact": True},
        {"quantiles": LEVELS, "rescale": "1/255"},
    ],
    ids=["quantiles", "histogram", "exact", "rescale"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_checkpointed_fit_with_a_summary_resumes_bit_for_bit(tmp_path, kw, dtype):
    """The summary is saved with every pending state of the merge tree: a fit stopped part-way
    and resumed gives the uninterrupted fit's summary and quantiles, bit for bit, and those
    equal numpy's."""
    rng = np.random.default_rng(15)
    x = rng.lognormal(0, 1, (3000, 3)) if dtype == np.float64 else rng.integers(0, 256, (3000, 3))
    x = x.astype(dtype)
    paths = []
    for i, part in enumerate(np.array_split(x, 2)):
        paths.append(str(tmp_path / f"s{i}.npy"))
        np.save(paths[-1], part)
    state = str(tmp_path / "state.npz")
    whole = normstat.fit(paths, chunk_size=64, **kw)
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            paths,
            chunk_size=64,
            workers=1,
            checkpoint=state,
            checkpoint_every=1e-9,
            progress=CrashAfter(1900),  # in the second shard
            **kw,
        )
    with np.load(state) as saved:
        assert any("_histogram_keys" in k for k in saved.files)
    resumed = normstat.fit(paths, chunk_size=64, checkpoint=state, resume=True, **kw)
    assert not (tmp_path / "state.npz").exists()
    for name, a in whole.sketch.arrays().items():
        assert np.array_equal(a, resumed.sketch.arrays()[name]), name
    if "quantiles" in kw:
        assert np.array_equal(resumed.quantiles, whole.quantiles)
        scale = 1 / 255 if "rescale" in kw else 1.0
        want = _reference(x.astype(np.float64) * scale)
        got = resumed.quantiles.reshape(len(LEVELS), -1)
        if "exact" in kw or dtype == np.uint8:
            assert np.array_equal(got, want)
        else:
            assert np.all(np.abs(got - want) <= BOUND * np.abs(want))


def test_checkpoint_without_a_summary_does_not_resume_a_fit_with_one(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(16).normal(0, 3, (600, 2)))
    state = str(tmp_path / "state.npz")
    for before, after in (({}, {"quantiles": LEVELS}), ({"histogram": True}, {})):
        with pytest.raises(RuntimeError, match="crash"):
            normstat.fit(
                str(tmp_path / "x.npy"),
                chunk_size=64,
                checkpoint=state,
                checkpoint_every=1e-9,
                progress=CrashAfter(300),
                **before,
            )
        with pytest.raises(normstat.DataError, match="distribution_summary"):
            normstat.fit(
                str(tmp_path / "x.npy"), chunk_size=64, checkpoint=state, resume=True, **after
            )
        os.unlink(state)


def test_damaged_summary_in_a_checkpoint_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(17).normal(0, 3, (600, 2)))
    state = tmp_path / "state.npz"
    kw = {"chunk_size": 64, "quantiles": LEVELS}
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(
            str(tmp_path / "x.npy"),
            checkpoint=str(state),
            checkpoint_every=1e-9,
            progress=CrashAfter(300),
            **kw,
        )
    with np.load(state) as saved:
        arrays = {k: saved[k] for k in saved.files}
    arrays["0_histogram_counts"] = arrays["0_histogram_counts"] + 1  # counts no longer add up
    np.savez(state, **arrays)
    with pytest.raises(normstat.DataError, match="damaged summary"):
        normstat.fit(str(tmp_path / "x.npy"), checkpoint=str(state), resume=True, **kw)


@pytest.mark.parametrize("scale", ["1/255", "-2"])
def test_rescale_applies_before_the_summary(tmp_path, scale):
    """``--rescale``: the quantiles and the summary are those of ``x * rescale``, as numpy's
    of the rescaled values: exact for uint8 (each value scaled once), within the bound for
    floats, and exact with ``--exact``; ``apply --method robust`` maps as on the scaled data."""
    rng = np.random.default_rng(18)
    r = 1 / 255 if scale == "1/255" else -2.0
    for x in (rng.integers(0, 256, (5000, 3)).astype(np.uint8), rng.normal(3, 2, (5000, 3))):
        np.save(tmp_path / "x.npy", x)
        want = _reference(x.astype(np.float64) * r)
        stats = normstat.fit(str(tmp_path / "x.npy"), quantiles=LEVELS, rescale=scale)
        got = stats.quantiles.reshape(len(LEVELS), -1)
        if x.dtype == np.uint8:
            assert np.array_equal(got, want)
        else:
            assert np.all(np.abs(got - want) <= BOUND * np.abs(want))
        exact = normstat.fit(str(tmp_path / "x.npy"), quantiles=LEVELS, rescale=scale, exact=True)
        assert np.array_equal(exact.quantiles.reshape(len(LEVELS), -1), want)
        assert stats.rescale == r and np.allclose(stats.mean, x.mean(axis=0) * r)
    # robust scaling of the raw values with statistics of the rescaled ones
    robust = normstat.fit(str(tmp_path / "x.npy"), quantiles="robust", rescale=scale, exact=True)
    y = transform(x, robust, method="robust")
    q25, q50, q75 = np.quantile(x * r, [0.25, 0.5, 0.75], axis=0)
    assert np.allclose(y, (x * r - q50) / (q75 - q25), rtol=1e-5, atol=1e-5)  # float32 output


def test_dask_tables_and_exact_equal_local(tmp_path):
    pytest.importorskip("distributed")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(16)
    paths = []
    for i in range(2):
        table = pa.table(
            {"a": rng.normal(0, 1, 900), "b": rng.integers(0, 9, 900).astype(np.uint8)}
        )
        paths.append(str(tmp_path / f"t{i}.parquet"))
        pq.write_table(table, paths[-1], row_group_size=200)
    kw = {"quantiles": LEVELS, "exact": True, "chunk_size": 64, "task_size": 256}
    local = normstat.fit(paths, **kw)
    dask = normstat.fit(paths, engine="dask", workers=2, **kw)
    assert np.array_equal(local.quantiles, dask.quantiles)
    whole = pa.concat_tables([pq.read_table(p) for p in paths])
    want = np.stack([np.quantile(whole[c].to_numpy(), LEVELS) for c in "ab"], axis=1)
    assert (local.quantiles == want).all()


def test_damaged_histograms_are_refused():
    good = artifact.to_dict(fit_arrays(DATA["normal"], histogram=True))
    for key, change in [
        ("keys", lambda v: v[::-1]),
        ("keys", lambda v: [float(k) + 0.5 for k in v]),
        ("offsets", lambda v: v[:-1]),
        ("counts", lambda v: [0, *v[1:]]),
    ]:
        doc = json.loads(json.dumps(good))
        doc["histogram"][key] = change(doc["histogram"][key])
        with pytest.raises(normstat.ArtifactError, match="histogram"):
            artifact.from_dict(doc)


@pytest.mark.parametrize("suffix", ["h5", "zarr"])
def test_apply_robust_records_the_map_and_the_whole_statistics(tmp_path, suffix):
    """The output records the statistics it used with their quantiles and summary (thousands of
    buckets: past an HDF5 attribute's size, so stored as a dataset the attribute names), and
    they load back as the fitted ones."""
    h5py = pytest.importorskip("h5py")
    if suffix == "zarr":
        zarr = pytest.importorskip("zarr")
    x = np.random.default_rng(17).lognormal(0, 2, (200_000, 2))  # thousands of buckets
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = x
    stats = normstat.fit(str(tmp_path / "x.h5"), quantiles="robust")
    out = str(tmp_path / f"y.{suffix}")
    normstat.apply(stats, str(tmp_path / "x.h5"), out, method="robust")
    if suffix == "h5":
        from normstat.sinks.hdf5 import read_record

        with h5py.File(out) as f:
            y = f["x"][...]
            assert f["x"].attrs["normstat_method"] == "robust"
            doc = json.loads(read_record(f["x"], "normstat_stats"))
    else:
        arr = zarr.open(out, mode="r")
        arr = arr if hasattr(arr, "shape") else arr["x"]
        y = arr[...]
        doc = json.loads(arr.attrs["normstat_stats"])
    back = artifact.from_dict(doc)
    assert np.array_equal(back.quantiles, stats.quantiles)
    for name, a in stats.sketch.arrays().items():
        assert np.array_equal(back.sketch.arrays()[name], a), name
    q = stats.quantiles
    np.testing.assert_allclose(y, ((x - q[1]) / (q[2] - q[0])).astype(np.float32), rtol=1e-6)


def test_exact_refuses_data_that_changed_between_passes():
    x = DATA["normal"][:, :1]
    search = ExactSearch(chunk_sketch(x), [0.5])
    spec = SketchSpec(search.next_refinement())
    with pytest.raises(normstat.DataError, match="changed between the passes"):
        search.absorb(spec.build(np.vstack([x, np.median(x, axis=0)])))  # one more there


def test_artifact_levels_must_be_increasing_in_unit_interval():
    doc = artifact.to_dict(fit_arrays(DATA["normal"], quantiles="robust"))
    doc["quantile_levels"] = [0.25, 0.5, 1.5]
    with pytest.raises(normstat.ArtifactError, match="quantile_levels"):
        artifact.from_dict(doc)


def test_fit_arrays_exact():
    x = DATA["lognormal"]
    stats = fit_arrays([x[:7000], x[7000:]], quantiles=LEVELS, exact=True)
    assert (stats.quantiles == _reference(x)).all()
    with pytest.raises(UsageError, match="twice"):
        fit_arrays(iter([x]), quantiles=LEVELS, exact=True)


def test_cli_merge_unions_levels_and_refuses_a_part_without_summary(tmp_path):
    x = DATA["normal"]
    run = CliRunner().invoke
    names = []
    for i, (part, levels) in enumerate(
        zip(np.array_split(x, 2), ["robust", "0.01,0.99"], strict=True)
    ):
        np.save(tmp_path / f"p{i}.npy", part)
        names.append(str(tmp_path / f"p{i}.json"))
        args = ["fit", str(tmp_path / f"p{i}.npy"), "--quantiles", levels, "-o", names[-1], "-q"]
        assert run(main, args).exit_code == 0
    out = str(tmp_path / "m.json")
    assert run(main, ["merge", *names, "-o", out, "-q"]).exit_code == 0
    merged = artifact.load(out)
    assert merged.quantile_levels == (0.01, 0.25, 0.5, 0.75, 0.99)
    want = fit_arrays(x, quantiles=[0.01, 0.25, 0.5, 0.75, 0.99]).quantiles
    assert np.array_equal(merged.quantiles, want)
    plain = str(tmp_path / "plain.json")
    run(main, ["fit", str(tmp_path / "p0.npy"), "-o", plain, "-q"])
    r = run(main, ["merge", names[1], plain])
    assert r.exit_code == 1 and "no distribution summary" in r.stderr
