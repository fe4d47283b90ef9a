"""Hugging Face ``datasets`` directories written by ``save_to_disk``: which files are the data.

Such a directory holds Arrow IPC *stream* files (``data-00000-of-00003.arrow``...), read by the
``arrow`` row of the format table, beside ``dataset_info.json`` and ``state.json``. The data files
are those ``state.json`` lists under ``_data_files``, in that order: any other ``.arrow`` file
there (``cache-*.arrow`` left by ``map``) is not the dataset. A ``DatasetDict`` directory
(``dataset_dict.json``) holds one directory per split; pooling the splits would mix training and
test data, so one split must be named.
"""

from __future__ import annotations

import json
import os
from typing import Any

from normstat.errors import DataError

STATE = "state.json"
INFO = "dataset_info.json"
SPLITS = "dataset_dict.json"


def is_saved_dataset(directory: str) -> bool:
    """A directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return os.path.isfile(os.path.join(directory, STATE)) or os.path.isfile(
        os.path.join(directory, SPLITS)
    )


def data_files(directory: str) -> list[str]:
    """The dataset's Arrow files in ``state.json`` order; a ``DatasetDict`` is refused, naming
    its splits."""
    splits = os.path.join(directory, SPLITS)
    if os.path.isfile(splits):
        names = _json(splits).get("splits")
        listed = ", ".join(os.path.join(directory, s) for s in names or [])
        raise DataError(
            f"is a DatasetDict (splits: {names}): name one split, e.g. {listed}", path=directory
        )
    state = _json(os.path.join(directory, STATE))
    files = state.get("_data_files")
    if not isinstance(files, list) or not files:
        raise DataError(f"{STATE} lists no '_data_files'", path=directory)
    out = []
    for f in files:
        name = f.get("filename") if isinstance(f, dict) else None
        if not isinstance(name, str) or os.path.basename(name) != name or name.startswith("."):
            raise DataError(
                f"{STATE} names a data file that is not a plain file name: {f!r}", path=directory
            )
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise DataError(f"{STATE} lists {name}, which is missing", path=directory)
        out.append(path)
    return out


def _json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fp:
            doc = json.load(fp)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {os.path.basename(path)}: {exc}", path=path) from None
    if not isinstance(doc, dict):
        raise DataError("is not a JSON object", path=path)
    return doc
