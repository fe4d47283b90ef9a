"""Running the steps: fit (the per-chunk step :func:`~normstat.engine.task.chunk_task` and the
merge tree, on local threads or Dask tasks planned by :mod:`~normstat.engine.plan`) and apply
(the pipeline of :mod:`~normstat.engine.apply`).

The per-chunk function is pure and picklable, and the merge is :meth:`Moments.merge` in
:class:`~normstat.core.moments.TreeMerger`; the local engine runs them on threads, the Dask
engine runs the very same functions as tasks, so both give the same result by construction.
Nothing is imported here, so an ``apply`` does not load the fit engine, nor a fit the apply
pipeline.
"""
