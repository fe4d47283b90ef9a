"""The pure numeric core: numpy and the standard library only, no I/O.

Everything here is a value or a function of values, so the local and the distributed engine can
share it and tests can check it without files.
"""

from normstat.core.layout import AxisLayout, AxisSpec, parse_axis
from normstat.core.moments import Moments, chunk_moments, merge_all
from normstat.core.stats import Stats, is_constant_feature
from normstat.core.transform import METHODS, TransformParams, transform_params

__all__ = [
    "METHODS",
    "AxisLayout",
    "AxisSpec",
    "Moments",
    "Stats",
    "TransformParams",
    "chunk_moments",
    "is_constant_feature",
    "merge_all",
    "parse_axis",
    "transform_params",
]
