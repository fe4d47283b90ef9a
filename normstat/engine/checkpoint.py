"""Checkpoints of a long fit: the merge tree's pending states and the position reached, saved
atomically.

A checkpoint is only valid for the very same data read the very same way, so it records a
fingerprint — every source's path, dataset, size, modification time and a hash of its first and
last 64 KiB (a file swapped for another of the same size, its mtime restored, is caught), plus the
axis, the sample shape, the chunk size and the NaN policy — and refuses to resume when any of it
changed. It saves every pending partial state of the merge tree (not their sum), so the resumed
fit merges exactly the same tree as an uninterrupted one: the statistics are bit for bit equal.

Loading trusts nothing: a damaged or foreign file is one :class:`DataError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normstat import storage
from normstat.core.groups import GroupedMoments
from normstat.core.moments import FIELDS, Moments, TreeMerger
from normstat.core.npz import read_npz_member
from normstat.core.quantiles import FIELDS as SKETCH_FIELDS
from normstat.core.quantiles import Sketch, well_formed
from normstat.errors import ArtifactError, DataError
from normstat.sinks.atomic import atomic_output
from normstat.sources.base import ArraySource

KIND = "normstat.checkpoint"
HASHED_BYTES = 64 * 2**10
"""Bytes hashed at each end of a source file for its fingerprint."""
BUCKETS_PER_FEATURE = 2**20
"""What a saved distribution summary may declare per feature (above the worst case of
docs/quantiles.md), as for the artifact."""


def content_ends(path: str) -> str | None:
    """SHA-256 of a file's first and last :data:`HASHED_BYTES` (None for a directory store)."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        digest.update(fp.read(HASHED_BYTES))
        size = os.fstat(fp.fileno()).st_size
        fp.seek(max(size - HASHED_BYTES, 0))
        digest.update(fp.read(HASHED_BYTES))
    return digest.hexdigest()


def fingerprint(sources: list[ArraySource], **settings: Any) -> dict[str, Any]:
    files = []
    for s in sources:
        for path in getattr(s, "files", None) or [s.path]:  # a source of many files: each
            if storage.is_uri(path):  # the store's own version marks: size, ETag, mtime
                files.append(
                    {"path": storage.shown(path), "dataset": s.dataset, **storage.info(path)}
                )
                continue
            st = os.stat(path)
            files.append(
                {
                    "path": path,
                    "dataset": s.dataset,
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "ends_sha256": content_ends(path),
                }
            )
    return {"sources": files, **settings}


@dataclass
class Checkpointer:
    """Called after every merged chunk; saves at most every ``every`` seconds."""

    path: str
    every: float
    print_: dict[str, Any]
    rows_done: int = 0
    _last: float = field(default_factory=time.monotonic)
    state: Callable[[int], Any] | None = None  # a source's record as of rows done (images)

    def __call__(self, tree: TreeMerger, samples: int) -> None:
        self.rows_done += samples
        if time.monotonic() - self._last >= self.every:
            self.save(tree)

    def save(self, tree: TreeMerger) -> None:
        pending = tree.pending
        meta = {
            "kind": KIND,
            "rows_done": self.rows_done,
            "levels": [level for level, _ in pending],
            "fingerprint": self.print_,
        }
        if self.state is not None:
            meta["source_state"] = self.state(self.rows_done)
        arrays = {
            f"{i}_{name}": a
            for i, (_, m) in enumerate(pending)
            for name, a in zip(FIELDS, m.arrays(), strict=True)
        }
        for i, (_, m) in enumerate(pending):  # the distribution summary, kept beside
            if m.sketch is not None:
                arrays.update({f"{i}_histogram_{k}": v for k, v in m.sketch.arrays().items()})
        if any(m.weight is not None or m.groups is not None for _, m in pending):
            meta["groups"] = [None if m.groups is None else m.groups.n_groups for _, m in pending]
            for i, (_, m) in enumerate(pending):
                arrays.update(_keyed_arrays(i, m))
        with atomic_output(self.path) as tmp, open(tmp, "wb") as fp:
            np.savez(fp, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
        self._last = time.monotonic()


def _keyed_arrays(i: int, m: Moments) -> dict[str, np.ndarray]:
    """State ``i``'s weights (``fit --weights``) and per-group moments (``fit --by``), saved
    exactly (the resumed fit merges them in the same tree, bit for bit)."""
    out: dict[str, np.ndarray] = {}
    if m.weight is not None:
        out[f"{i}_weight"] = m.weight
    if m.groups is not None:
        g = m.groups.moments
        out[f"{i}_by_keys"] = m.groups.keys
        out.update({f"{i}_by_{k}": a for k, a in zip(FIELDS, g.arrays(), strict=True)})
        if g.weight is not None:
            out[f"{i}_by_weight"] = g.weight
    return out


def load(
    path: str, expected: dict[str, Any], n_features: int, total_rows: int | None = None
) -> tuple[TreeMerger, int]:
    """The saved merge tree and rows done; an error naming what is wrong or what changed."""
    try:
        meta, arrays = _read(path, n_features)
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise DataError(f"not a readable checkpoint ({_first_line(exc)})", path=path) from None
    if meta.get("kind") != KIND:
        raise DataError("not a normstat checkpoint", path=path)
    _check_same(_fingerprint_of(meta, path), expected, path)
    rows_done = meta.get("rows_done")
    if not isinstance(rows_done, int) or isinstance(rows_done, bool) or rows_done < 0:
        raise DataError(f"'rows_done' is not a row count: {rows_done!r:.40}", path=path)
    if total_rows is not None and rows_done > total_rows:
        raise DataError(
            f"'rows_done' {rows_done} is past the end of the data ({total_rows} rows)", path=path
        )
    return _tree(meta, arrays, n_features, path), rows_done


def saved_state(path: str, n_features: int) -> Any:
    """What the source recorded as of the checkpoint (None if nothing), for its ``restore``."""
    meta, _ = _read(path, n_features)
    return meta.get("source_state")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read(path: str, n_features: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The meta object and every array, each read only after its declared size was checked."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if "meta.npy" not in infos:
                raise DataError("not a normstat checkpoint (no 'meta' entry)", path=path)
            meta_arr = read_npz_member(zf, infos.pop("meta.npy"), 2**24, path)
            meta = json.loads(str(meta_arr)) if meta_arr.dtype.kind == "U" else None
            if not isinstance(meta, dict):
                raise DataError(
                    "not a normstat checkpoint (its 'meta' is not a JSON object)", path=path
                )
            groups = _group_counts(meta, path)
            arrays = {
                name[: -len(".npy")]: read_npz_member(
                    zf, info, _cap(name, n_features, groups), path
                )
                for name, info in infos.items()
            }
    except ArtifactError as exc:
        raise DataError(f"not a readable checkpoint ({exc.message})", path=path) from None
    return meta, arrays


MAX_GROUPS = 2**24
"""The most groups a saved state may declare (as for the artifact): what its members may then
inflate to is bounded before they are read."""


def _group_counts(meta: dict[str, Any], path: str) -> list[int | None]:
    groups = meta.get("groups", [])
    if not isinstance(groups, list) or not all(
        g is None or (isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= MAX_GROUPS)
        for g in groups
    ):
        raise DataError("the checkpoint's 'groups' is not a list of group counts", path=path)
    return groups


def _cap(name: str, n_features: int, groups: list[int | None]) -> int:
    """Bytes a member may declare: one value per feature, a summary's buckets, or per group
    (``{i}_by_...``) one value per feature and a key of up to 128 characters."""
    if "_histogram_" in name:
        return 8 * (n_features + 1) * BUCKETS_PER_FEATURE
    state, _, rest = name.partition("_")
    if rest.startswith("by_"):
        i = int(state) if state.isdigit() else -1
        g = groups[i] if 0 <= i < len(groups) else None
        return 0 if g is None else 8 * g * (n_features + 64)
    return 8 * n_features


def _fingerprint_of(meta: dict[str, Any], path: str) -> dict[str, Any]:
    saved = meta.get("fingerprint")
    files = saved.get("sources") if isinstance(saved, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) for f in files
    ):
        raise DataError("the checkpoint's fingerprint does not name its sources", path=path)
    return saved  # type: ignore[return-value]


def _tree(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], n_features: int, path: str
) -> TreeMerger:
    levels = meta.get("levels")
    if not isinstance(levels, list) or not all(
        isinstance(lv, int) and not isinstance(lv, bool) for lv in levels
    ):
        raise DataError("the checkpoint's merge tree is not a list of levels", path=path)
    groups = _group_counts(meta, path) or [None] * len(levels)
    if len(groups) != len(levels):
        raise DataError("the checkpoint's 'groups' does not match its merge tree", path=path)
    pending = [
        (lv, _moments(arrays, i, n_features, path, groups[i])) for i, lv in enumerate(levels)
    ]
    named = sum(
        len(FIELDS)
        + len(SKETCH_FIELDS) * (m.sketch is not None)
        + (m.weight is not None)
        + (0 if m.groups is None else 1 + len(FIELDS) + (m.groups.moments.weight is not None))
        for _, m in pending
    )
    if len(arrays) != named:
        raise DataError("the checkpoint holds arrays its merge tree does not name", path=path)
    try:
        return TreeMerger.restore(n_features, pending)
    except ValueError as exc:
        raise DataError(f"the checkpoint's merge tree is damaged ({exc})", path=path) from None


def _moments(
    arrays: dict[str, np.ndarray], i: int, n_features: int, path: str, groups: int | None = None
) -> Moments:
    """Partial state ``i``: every field present, of this fit's length and dtype, and possible
    (non-negative counts and m2, finite means, min <= max where there are values); its
    weights and per-group moments when saved."""
    m = _fields(arrays, f"{i}_", (n_features,), f"state {i}", path)
    m.sketch = _sketch(arrays, i, m, path)
    m.weight = _weight(arrays.get(f"{i}_weight"), m, f"state {i}", path)
    if groups is not None:
        m.groups = _groups(arrays, i, m, groups, path)
    return m


def _fields(
    arrays: dict[str, np.ndarray], prefix: str, shape: tuple[int, ...], what: str, path: str
) -> Moments:
    got = []
    for name in FIELDS:
        a = arrays.get(f"{prefix}{name}")
        want = np.int64 if name in ("count", "nan_count") else np.float64
        if a is None or a.shape != shape or a.dtype != want:
            found = None if a is None else (list(a.shape), str(a.dtype))
            raise DataError(
                f"the checkpoint's {what} has a damaged '{name}' ({found}; expected "
                f"{list(shape)} values of {np.dtype(want)})",
                path=path,
            )
        got.append(np.array(a))
    m = Moments(got[0], got[1], got[2], got[3], got[4], got[5], shift=got[6])
    has = m.count > 0
    with np.errstate(all="ignore"):
        ok = (
            (m.count >= 0).all()
            and (m.nan_count >= 0).all()
            and np.isfinite(m.m2).all()
            and (m.m2 >= 0).all()
            and np.isfinite(m.dmean[has] + m.shift[has]).all()
            and (m.min[has] <= m.max[has]).all()
        )
    if not ok:
        raise DataError(f"the checkpoint's {what} holds impossible statistics", path=path)
    return m


def _weight(w: np.ndarray | None, m: Moments, what: str, path: str) -> np.ndarray | None:
    """The sum of weights: finite, non-negative, positive exactly where rows were counted."""
    if w is None:
        return None
    if w.shape != m.count.shape or w.dtype != np.float64:
        raise DataError(f"the checkpoint's {what} has a damaged 'weight'", path=path)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(w).all() and (w >= 0).all() and np.array_equal(w > 0, m.count > 0)
    if not ok:
        raise DataError(f"the checkpoint's {what} holds impossible weights", path=path)
    return np.array(w)


def _groups(arrays: dict[str, np.ndarray], i: int, m: Moments, n: int, path: str) -> GroupedMoments:
    """State ``i``'s per-group moments: ``n`` sorted distinct keys, each group possible, and
    the groups' counts adding up to the state's exactly (every row is in one group)."""
    what = f"state {i}'s groups"
    keys = arrays.get(f"{i}_by_keys")
    if (
        keys is None
        or keys.shape != (n,)
        or keys.dtype.kind not in "iuU"
        or (n > 1 and not (keys[1:] > keys[:-1]).all())
    ):
        raise DataError(f"the checkpoint's {what} have damaged keys", path=path)
    g = _fields(arrays, f"{i}_by_", (n, m.n_features), what, path)
    g.weight = _weight(arrays.get(f"{i}_by_weight"), g, what, path)
    if (g.weight is None) != (m.weight is None) or not (
        np.array_equal(g.count.sum(axis=0), m.count)
        and np.array_equal(g.nan_count.sum(axis=0), m.nan_count)
    ):
        raise DataError(f"the checkpoint's {what} do not add up to the state", path=path)
    return GroupedMoments(np.array(keys), g)


def _sketch(arrays: dict[str, np.ndarray], i: int, m: Moments, path: str) -> Sketch | None:
    """The distribution summary of partial state ``i``, if saved: well formed, int64 and
    float64 as written, and counting exactly the state's values."""
    got = {k: arrays.get(f"{i}_histogram_{k}") for k in SKETCH_FIELDS}
    if all(v is None for v in got.values()):
        return None
    exact = ("min", "max", "neg_max", "pos_min")
    if any(
        v is None or v.ndim != 1 or v.dtype != (np.float64 if k in exact else np.int64)
        for k, v in got.items()
    ):
        raise DataError(f"the checkpoint's state {i} has a damaged summary", path=path)
    s = Sketch(**{k: np.array(v) for k, v in got.items()})
    if not well_formed(s, m.n_features) or not np.array_equal(s.total, m.count):
        raise DataError(f"the checkpoint's state {i} has a damaged summary", path=path)
    return s


def _check_same(saved: dict[str, Any], now: dict[str, Any], path: str) -> None:
    old_files, new_files = saved.get("sources", []), now["sources"]
    if [f["path"] for f in old_files] != [f["path"] for f in new_files]:
        raise DataError(
            f"the checkpoint was made for other sources: {', '.join(f['path'] for f in old_files)}",
            path=path,
        )
    for old, new in zip(old_files, new_files, strict=True):
        for key in ("dataset", "size", "mtime_ns", "ends_sha256"):
            if old.get(key) != new[key]:
                raise DataError(
                    f"{new['path']} changed since the checkpoint ({key}); refusing to resume "
                    "over changed data (delete the checkpoint to start again)",
                    path=path,
                )
    for key in sorted(set(now) | set(saved)):  # a setting only one side has differs too
        if key != "sources" and saved.get(key) != now.get(key):
            raise DataError(
                f"--resume needs the same {key} as the checkpointed run "
                f"(was {saved.get(key)!r}, now {now.get(key)!r})",
                path=path,
            )
