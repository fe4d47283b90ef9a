"""Checkpoints of a long fit: the merged state and the position reached, saved atomically.

A checkpoint is only valid for the very same data read the very same way, so it records a
fingerprint — every source's path, dataset, size and modification time, plus the axis, the
sample shape, the chunk size and the NaN policy — and refuses to resume when any of it changed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normstat.core.moments import FIELDS, Moments, TreeMerger
from normstat.core.quantiles import FIELDS as SKETCH_FIELDS
from normstat.core.quantiles import Sketch
from normstat.errors import DataError
from normstat.sinks.atomic import atomic_output
from normstat.sources.base import ArraySource

KIND = "normstat.checkpoint"


def fingerprint(sources: list[ArraySource], **settings: Any) -> dict[str, Any]:
    files = []
    for s in sources:
        st = os.stat(s.path)
        files.append(
            {"path": s.path, "dataset": s.dataset, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
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

    def __call__(self, tree: TreeMerger, samples: int) -> None:
        self.rows_done += samples
        if time.monotonic() - self._last >= self.every:
            self.save(tree.total())

    def save(self, moments: Moments) -> None:
        meta = {"kind": KIND, "rows_done": self.rows_done, "fingerprint": self.print_}
        with atomic_output(self.path) as tmp, open(tmp, "wb") as fp:
            np.savez(fp, meta=np.array(json.dumps(meta)), **_arrays(moments))  # type: ignore[arg-type]
        self._last = time.monotonic()


def _arrays(m: Moments) -> dict[str, np.ndarray]:
    """The moments, and the distribution summary (``sketch_*``) when the fit keeps one."""
    out = dict(zip(FIELDS, m.arrays(), strict=True))
    if m.sketch is not None:
        out.update({f"sketch_{k}": v for k, v in m.sketch.arrays().items()})
    return out


def load(path: str, expected: dict[str, Any]) -> tuple[Moments, int]:
    """The saved state and rows done; an error naming what changed if it does not fit."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            moments = Moments(*(z[k] for k in FIELDS))
            if "sketch_drop" in z.files:
                moments.sketch = Sketch(**{k: z[f"sketch_{k}"] for k in SKETCH_FIELDS})
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"not a readable checkpoint ({exc})", path=path) from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise DataError("not a normstat checkpoint", path=path)
    _check_same(meta.get("fingerprint", {}), expected, path)
    return moments, int(meta["rows_done"])


def _check_same(saved: dict[str, Any], now: dict[str, Any], path: str) -> None:
    old_files, new_files = saved.get("sources", []), now["sources"]
    if [f["path"] for f in old_files] != [f["path"] for f in new_files]:
        raise DataError(
            f"the checkpoint was made for other sources: {', '.join(f['path'] for f in old_files)}",
            path=path,
        )
    for old, new in zip(old_files, new_files, strict=True):
        for key in ("dataset", "size", "mtime_ns"):
            if old.get(key) != new[key]:
                raise DataError(
                    f"{new['path']} changed since the checkpoint ({key}); refusing to resume "
                    "over changed data (delete the checkpoint to start again)",
                    path=path,
                )
    for key in now:
        if key != "sources" and saved.get(key) != now[key]:
            raise DataError(
                f"--resume needs the same {key} as the checkpointed run "
                f"(was {saved.get(key)!r}, now {now[key]!r})",
                path=path,
            )
