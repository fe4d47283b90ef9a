"""Map chunks to moments and merge them as a tree.

The per-chunk function (:func:`chunk_task`) is pure and picklable, and the merge is
:meth:`Moments.merge`; the local engine runs them on threads, a distributed engine can run the
very same functions as tasks, so both give the same result by construction.
"""

from normstat.engine.local import fit_local
from normstat.engine.task import chunk_task

__all__ = ["chunk_task", "fit_local"]
