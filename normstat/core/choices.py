"""Closed sets of option values, in one numpy-free place.

The CLI builds its ``click.Choice`` options from these at import time; keeping them here (and not
beside the code that uses them) lets ``normstat --help`` run without importing numpy.
"""

NAN_POLICIES: tuple[str, ...] = ("skip", "error")
METHODS: tuple[str, ...] = ("zscore", "minmax", "center", "robust", "quantile")
ENGINES: tuple[str, ...] = ("local", "dask")
METRICS: tuple[str, ...] = ("psi", "ks", "wasserstein", "js", "hellinger")
EXPORT_TARGETS: tuple[str, ...] = (
    "keras",
    "torch",
    "sklearn",
    "sklearn-robust",
    "lerobot",
    "openpi",
)
OUTPUT_FORMATS: tuple[str, ...] = ("hdf5", "npy", "zarr", "parquet", "arrow", "feather", "csv")
"""The names of :data:`normstat.sinks.OUTPUTS` (a test holds them equal)."""
