"""The local engine's merge tree, rebuilt from tasks whose boundaries do not follow it.

The local engine merges chunks 0, 1, 2, ... with a binary counter (:class:`TreeMerger`): each
node of its tree merges an *aligned block* of ``2**k`` chunks, one starting at a multiple of
``2**k``, as ``left.merge(right)`` of its two halves, and the final result folds the counter's
stack (the largest aligned blocks that tile chunks ``0:n``) from left to right.

A task of any consecutive chunks ``a:b`` (whole Parquet row groups, whatever their chunk counts)
cannot return one node of that tree, but it can return the largest aligned blocks that tile
``a:b``, in order: a *tiling*, about ``2 log2(b - a)`` blocks at most. Two adjacent tilings join
into the tiling of their union by merging sibling blocks where they meet. Every merge is one the
local engine makes, on the same operands in the same order, so the result equals the local
engine's bit for bit, wherever the task boundaries fall and in whatever order the cluster joins
adjacent tasks. Pure functions of immutable values: tasks on any worker can run them.
"""

from __future__ import annotations

from dataclasses import dataclass

from normstat.core.moments import Moments


@dataclass(frozen=True)
class Block:
    """The merged moments of chunks ``first:first + 2**level``."""

    level: int
    first: int
    moments: Moments

    @property
    def stop(self) -> int:
        return self.first + (1 << self.level)


Tiling = tuple[Block, ...]


def _siblings(a: Block, b: Block) -> bool:
    """``a`` and ``b`` are the two halves of one aligned block."""
    return a.level == b.level and a.first % (2 << a.level) == 0 and a.stop == b.first


def extend(tiling: list[Block], block: Block) -> None:
    """Append ``block`` (which starts where ``tiling`` ends), merging siblings as they meet."""
    tiling.append(block)
    while len(tiling) > 1 and _siblings(tiling[-2], tiling[-1]):
        b, a = tiling.pop(), tiling.pop()
        tiling.append(Block(a.level + 1, a.first, a.moments.merge(b.moments)))


def join(left: Tiling, right: Tiling) -> Tiling:
    """The tiling of two adjacent ranges of chunks, ``left`` first."""
    if left and right and left[-1].stop != right[0].first:
        raise ValueError(f"tilings are not adjacent: {left[-1].stop} != {right[0].first}")
    out = list(left)
    for block in right:
        extend(out, block)
    return tuple(out)


def total(tiling: Tiling, n_features: int) -> Moments:
    """The result of a tiling of chunks ``0:n``, folded as :meth:`TreeMerger.total` folds."""
    result = Moments.empty(n_features)
    for block in tiling:
        result = result.merge(block.moments)
    return result
