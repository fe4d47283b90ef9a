"""How inputs are read, as the user declared it: small picklable values (no pyarrow, no Pillow
here): :class:`TableOptions` for tables, :class:`ImageOptions` for images.

A value travels with a :class:`~normstat.sources.ranges.RowRange` to Dask workers, so a worker
reads a CSV with the same delimiter, header and types as the client did.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from normstat.errors import UsageError


@dataclass(frozen=True)
class TableOptions:
    """``exclude``: columns never features. CSV only: ``column_types`` (name -> Arrow type name,
    e.g. ``float64``, ``string``), ``delimiter``, ``header`` (False: columns ``c0, c1, ...``) and
    ``null_values`` (None: pyarrow's usual spellings, ``NA``, ``null``, ...)."""

    exclude: tuple[str, ...] = ()
    column_types: tuple[tuple[str, str], ...] = ()
    delimiter: str = ","
    header: bool = True
    null_values: tuple[str, ...] | None = None
    by: str | None = None
    """``fit --by``: the column whose values name each row's group (read beside the features,
    never one of them)."""
    weights: str | None = None
    """``fit --weights``: the column of each row's weight (never a feature)."""

    @property
    def extras(self) -> tuple[tuple[str, str], ...]:
        """``(role, column)`` of the columns read beside the features: ``by``, ``weights``."""
        pairs = (("by", self.by), ("weights", self.weights))
        return tuple((role, name) for role, name in pairs if name is not None)

    @property
    def types(self) -> dict[str, str]:
        return dict(self.column_types)

    def is_csv_default(self) -> bool:
        return (
            not self.column_types
            and self.delimiter == ","
            and self.header
            and self.null_values is None
        )


@dataclass(frozen=True)
class ImageOptions:
    """How image sources (files, folders, tar shards, image columns) are decoded: ``mode`` (a
    Pillow mode, converted to as ``Image.convert`` does), ``resize`` (the shorter side, as
    torchvision's ``Resize(size)``), ``center_crop`` ``(h, w)`` (``CenterCrop``), ``skip_bad``
    (skip and record images that do not decode) and ``workers`` (decoding processes; None: all
    cores). Built and checked by ``normstat.api.options.image_options``."""

    mode: str = "RGB"
    resize: int | None = None
    center_crop: tuple[int, int] | None = None
    skip_bad: bool = False
    workers: int | None = None

    def is_default(self) -> bool:
        """Nothing asked of an image decoder (``workers`` serves every format)."""
        return self == ImageOptions(workers=self.workers)


def names(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    """Column names from a list, or from one string of comma-separated names, CSV-quoted when a
    name holds a comma (``'"weight, kg",price'``); a bare string is never iterated by character."""
    if value is None:
        return None
    if isinstance(value, str):
        rows = list(csv.reader([value], skipinitialspace=True))
        parsed = [v.strip() for v in rows[0]] if rows else []
        if not parsed or not all(parsed):
            raise UsageError(
                f"{what} expects names separated by commas (quote a name holding a comma: "
                f"'\"weight, kg\",price'), received {value!r}"
            )
        return parsed
    out = list(value)
    if not all(isinstance(v, str) for v in out):
        raise UsageError(f"{what} expects column names (strings), received {out!r}")
    return out


def column_types(
    value: str | Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> dict[str, str]:
    """``"a:float64,b:string"`` (or a mapping) -> {name: type}; types are checked by the reader."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        return {str(k): str(v) for k, v in value}
    out: dict[str, str] = {}
    for item in names(value, "--column-types") or []:
        name, sep, type_ = item.rpartition(":")
        if not sep or not name or not type_.strip():
            raise UsageError(
                f"--column-types expects NAME:TYPE pairs (e.g. price:float64,id:string), "
                f"received {item!r}"
            )
        out[name.strip()] = type_.strip()
    return out


def table_options(
    exclude: str | Sequence[str] | None = None,
    column_types_: str | Mapping[str, str] | None = None,
    delimiter: str | None = None,
    header: bool = True,
    null_values: str | Sequence[str] | None = None,
) -> TableOptions:
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter) if delimiter else delimiter
    if delimiter is not None and len(delimiter) != 1:
        raise UsageError(f"--delimiter must be one character (or \\t, tab), received {delimiter!r}")
    if isinstance(null_values, str):
        nulls: tuple[str, ...] | None = tuple(v.strip() for v in null_values.split(","))
    else:
        nulls = None if null_values is None else tuple(null_values)
    return TableOptions(
        exclude=tuple(names(exclude, "--exclude") or ()),
        column_types=tuple(column_types(column_types_).items()),
        delimiter="," if delimiter is None else delimiter,
        header=header,
        null_values=nulls,
    )
