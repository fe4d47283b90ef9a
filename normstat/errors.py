"""Typed errors that carry *where* a problem is (file, dataset, feature, row).

Every layer raises these instead of printing, so the CLI can turn any of them into one line on
stderr with the right exit code, and a library user can catch them by type. This module imports
nothing from normstat, so every other module may import it.
"""

from __future__ import annotations


class NormstatError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        dataset: str | None = None,
        feature: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.dataset = dataset
        self.feature = feature
        self.row = row

    def __str__(self) -> str:
        where = self.path or ""
        if self.dataset:
            where = f"{where}:{self.dataset}" if where else self.dataset
        return f"{where}: {self.message}" if where else self.message


class UsageError(NormstatError):
    """The request itself is wrong (bad option, bad axis, output exists): exit 2."""

    exit_code = 2


class DataError(NormstatError):
    """The data is wrong or unreadable (NaN under --nan error, inf, mismatched shards): exit 1."""


class ArtifactError(DataError):
    """A statistics artifact is malformed, or does not fit the data it is applied to."""


class NormstatWarning(UserWarning):
    """Something the user should know that does not stop the work (an empty feature, a feature
    only centred). The library issues it with :mod:`warnings`; the CLI prints it on stderr."""
