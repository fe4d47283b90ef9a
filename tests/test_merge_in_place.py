"""Chan merges written into the left state's buffers (``Moments.merge_into``) and the merge tree
that uses them for its own partial results only.

The reference is the out-of-place formula written out here with plain numpy expressions (the
one ``Moments.merge`` used before): the in-place merge must give the same bits, and must never
write a state someone else holds (a chunk's, a loaded artifact's, a checkpoint's).
"""

from __future__ import annotations

import numpy as np
import pytest

from normstat.core.moments import Moments, TreeMerger, chunk_moments, merge_all


def _chan(a: Moments, b: Moments) -> Moments:
    shift = np.where(a.count > 0, a.shift, b.shift)
    ma = np.where(a.count > 0, a.dmean + (a.shift - shift), 0.0)
    mb = np.where(b.count > 0, b.dmean + (b.shift - shift), 0.0)
    weighted = a.weight is not None or b.weight is not None
    wa = a.total_weight if weighted else a.count
    wb = b.total_weight if weighted else b.count
    w = wa + wb
    frac = np.divide(wb, w, out=np.zeros(w.shape), where=w > 0)
    delta = mb - ma
    return Moments(
        count=a.count + b.count,
        nan_count=a.nan_count + b.nan_count,
        dmean=ma + delta * frac,
        m2=a.m2 + b.m2 + delta * delta * wa * frac,
        min=np.minimum(a.min, b.min),
        max=np.maximum(a.max, b.max),
        shift=shift,
        weight=w if weighted else None,
    )


def _bits(m: Moments) -> list[bytes]:
    extra = [] if m.weight is None else [m.weight.tobytes()]
    return [a.tobytes() for a in m.arrays()] + extra


def _state(rng: np.random.Generator, f: int, weighted: bool) -> Moments:
    x = rng.standard_normal((int(rng.integers(1, 6)), f)) * 10.0 ** int(rng.integers(-3, 7))
    x += float(rng.integers(-(10**6), 10**6))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:, :3] = np.nan  # features with no value: the merge's identities
    m = chunk_moments(x)
    m.dmean[5] = -0.0
    if weighted:
        m.weight = m.count * rng.random(f)
    return m


@pytest.mark.parametrize("seed", range(40))
def test_merge_into_gives_the_out_of_place_formulas_bits(seed):
    rng = np.random.default_rng(seed)
    a = _state(rng, 64, seed % 3 == 0)
    b = _state(rng, 64, seed % 4 == 0)
    if seed % 5 == 0:
        a = Moments.empty(64)
    if seed % 7 == 0:
        b = Moments.empty(64)
    want = _bits(_chan(a, b))
    a_bits, b_bits = _bits(a), _bits(b)
    assert _bits(a.merge(b)) == want
    assert _bits(a) == a_bits and _bits(b) == b_bits  # merge writes neither side
    left = a.copy()
    assert left.merge_into(b) is left
    assert _bits(left) == want
    assert _bits(b) == b_bits  # merge_into writes only its left side


def test_merged_moments_match_numpy_two_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(1e6, 3.0, (1000, 5))
    parts = [chunk_moments(x[i : i + 37]) for i in range(0, 1000, 37)]
    got = merge_all(parts, 5)
    np.testing.assert_allclose(got.mean, x.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(got.m2 / 1000, x.var(axis=0), rtol=1e-12)


def _reference_tree(parts: list[Moments], n_features: int) -> Moments:
    stack: list[tuple[int, Moments]] = []
    for i, part in enumerate(parts):
        at, cur, level = i, part, 0
        while stack and stack[-1][0] == level and (at - (1 << level)) % (2 << level) == 0:
            cur = _chan(stack.pop()[1], cur)
            at -= 1 << level
            level += 1
        stack.append((level, cur))
    total = Moments.empty(n_features)
    for _, m in stack:
        total = _chan(total, m)
    return total


def test_the_tree_never_writes_the_parts_handed_to_it():
    rng = np.random.default_rng(2)
    parts = [_state(rng, 40, False) for _ in range(13)]
    before = [_bits(p) for p in parts]
    assert _bits(merge_all(parts, 40)) == _bits(_reference_tree(parts, 40))
    assert [_bits(p) for p in parts] == before


def test_states_handed_out_or_shared_are_not_written_later():
    rng = np.random.default_rng(3)
    parts = [_state(rng, 40, False) for _ in range(16)]
    tree = TreeMerger(40)
    for p in parts[:6]:
        tree.add(p)
    pending = tree.pending  # a checkpoint holds these now
    held = [_bits(m) for _, m in pending]
    for p in parts[6:]:
        tree.add(p)
    assert [_bits(m) for _, m in pending] == held
    assert _bits(tree.total()) == _bits(_reference_tree(parts, 40))

    left = TreeMerger(40)
    for p in parts[:6]:
        left.add(p)
    right = TreeMerger(40, 6)
    for p in parts[6:10]:
        right.add(p)
    joined = left.joined(right)
    shared = [_bits(m) for _, m in left.pending]
    for p in parts[10:]:
        joined.add(p)
    assert [_bits(m) for _, m in left.pending] == shared  # the joined tree wrote none of them
    assert _bits(joined.total()) == _bits(_reference_tree(parts, 40))
