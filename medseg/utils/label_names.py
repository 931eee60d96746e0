"""Class names from a dataset.json, in medseg/MSD or nnU-Net v2 layout (used by the tools)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)


def read_label_names(path: str | os.PathLike) -> dict[int, str]:
    """Class names by id, background included, from a dataset.json's `labels` or a bare mapping.

    Both directions are understood: medseg/MSD `{"1": "liver"}` and nnU-Net v2 `{"liver": 1}`.
    The regions of nnU-Net's region-based training (`{"whole_tumour": [1, 2, 3]}`) name no single
    id; they are skipped with a warning.

    Raises:
        ValueError: naming the file, when it is not JSON or holds no usable mapping.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as JSON ({err})") from None
    labels = data.get("labels", data) if isinstance(data, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f'{path}: expected a `labels` mapping such as {{"1": "liver"}}')
    names: dict[int, str] = {}
    regions = []
    for key, value in labels.items():
        if isinstance(key, str) and key.strip().isdigit():
            names[int(key)] = str(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            names[value] = str(key)
        elif isinstance(value, list):
            regions.append(str(key))
        else:
            raise ValueError(
                f"{path}: label entry {key!r}: {value!r} is neither id → name nor name → id"
            )
    if regions:
        logger.warning("%s: region labels %s name no single id; skipped", path, regions)
    if not names:
        raise ValueError(f"{path}: no label entry maps an id to a name: {dict(labels)}")
    return dict(sorted(names.items()))
