"""Regions of region-based training: nested sets of label ids and the way back to label ids.

BraTS scores whole tumour (edema, non-enhancing and enhancing tumour), tumour core (the two
tumour labels) and enhancing tumour, regions that overlap. Region-based training (nnU-Net's
`regions`) gives the network one sigmoid channel per region instead of a softmax over label ids.
A region is a name and the label ids it contains; `dataset.json` lists them in painting order.
Back to label ids, the regions are painted in that order, later wins, each with its own label: the
one id of the region that no later region contains (whole tumour [1, 2, 3] paints 1, tumour core
[2, 3] paints 2, enhancing [3] paints 3). `Regions.from_list` accepts only lists where every
region has exactly one own id and every foreground label lies in some region, which makes
label map → regions → label map exact. Torch-free; the losses index `membership` with torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from medseg.cvlibs.errors import ConfigError
from medseg.utils.vocabulary import label_dtype

# A region is predicted where its probability exceeds this (nnU-Net's rule).
THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class Region:
    """One region: its name and the label ids it holds."""

    name: str
    labels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Regions:
    """The regions of a dataset in painting order (validated by `from_list`).

    Attributes:
        regions: The regions, largest first for nested ones.
    """

    regions: tuple[Region, ...]

    def __len__(self) -> int:
        return len(self.regions)

    @property
    def names(self) -> tuple[str, ...]:
        """Region names, in order (the network's output channels)."""
        return tuple(r.name for r in self.regions)

    @property
    def paint_ids(self) -> tuple[int, ...]:
        """The label id each region paints: its one id that no later region holds."""
        ids = []
        for k, region in enumerate(self.regions):
            later = {i for r in self.regions[k + 1 :] for i in r.labels}
            ids.append(next(i for i in region.labels if i not in later))
        return tuple(ids)

    @property
    def highest_id(self) -> int:
        """The largest label id in any region."""
        return max(i for r in self.regions for i in r.labels)

    def to_list(self) -> list[dict[str, Any]]:
        """The JSON/YAML form: `[{"name": ..., "labels": [ids]}, ...]`."""
        return [{"name": r.name, "labels": list(r.labels)} for r in self.regions]

    @classmethod
    def from_list(
        cls,
        value: Any,
        label_ids: Iterable[int] | None = None,
        where: str | None = None,
        key: str = "regions",
    ) -> Regions:
        """Validate the JSON/YAML form; errors name `where` (the file) and `key.<k>`.

        Args:
            value: `[{"name": str, "labels": [ids]}, ...]`, in painting order.
            label_ids: The dataset's label ids, background included (None: not checked).
            where: The file, for error messages.
            key: The dotted key of the list.

        Raises:
            ConfigError: for a malformed entry, an unknown or background id, a duplicate name,
                a region without exactly one own id, or a foreground label in no region.
        """
        if not isinstance(value, list) or not value:
            raise ConfigError(
                f'expected a non-empty list of {{"name": ..., "labels": [ids]}}, got {value!r}',
                where,
                key,
            )
        known = None if label_ids is None else set(label_ids)
        regions: list[Region] = []
        for k, entry in enumerate(value):
            at = f"{key}.{k}"
            if not isinstance(entry, dict) or set(entry) != {"name", "labels"}:
                raise ConfigError(
                    f'expected {{"name": str, "labels": [ids]}}, got {entry!r}', where, at
                )
            name, ids = entry["name"], entry["labels"]
            if not isinstance(name, str) or not name:
                raise ConfigError(f"expected a region name, got {name!r}", where, f"{at}.name")
            if name in {r.name for r in regions}:
                raise ConfigError(f"region name {name!r} is used twice", where, f"{at}.name")
            if (
                not isinstance(ids, list)
                or not ids
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                or len(set(ids)) != len(ids)
            ):
                raise ConfigError(
                    f"expected a non-empty list of distinct label ids, got {ids!r}",
                    where,
                    f"{at}.labels",
                )
            unknown = [i for i in ids if i < 1 or (known is not None and i not in known)]
            if unknown:
                raise ConfigError(
                    f"label ids {unknown} are not foreground ids of the dataset "
                    f"{sorted(known - {0}) if known is not None else '(>= 1)'}",
                    where,
                    f"{at}.labels",
                )
            regions.append(Region(name, tuple(ids)))
        for k, region in enumerate(regions):
            later = {i for r in regions[k + 1 :] for i in r.labels}
            own = [i for i in region.labels if i not in later]
            if len(own) != 1:
                raise ConfigError(
                    f"region {region.name!r} holds {own or 'no'} id(s) that no later region "
                    "holds; each region needs exactly one such id (the one it paints back), so "
                    "list nested regions from largest to smallest",
                    where,
                    f"{key}.{k}",
                )
        if known is not None:
            lost = sorted(known - {0} - {i for r in regions for i in r.labels})
            if lost:
                raise ConfigError(
                    f"label ids {lost} are in no region; predictions could not give them back",
                    where,
                    key,
                )
        return cls(tuple(regions))

    def membership(self, highest_id: int | None = None) -> np.ndarray:
        """Bool table `(R, highest_id + 1)`: `table[r, i]` is whether region r holds label i."""
        highest = self.highest_id if highest_id is None else highest_id
        table = np.zeros((len(self), highest + 1), dtype=bool)
        for k, region in enumerate(self.regions):
            table[k, list(region.labels)] = True
        return table

    def to_masks(self, label: np.ndarray) -> np.ndarray:
        """A label map `(...)` as region masks `(R, ...)` (bool); other ids are in no region."""
        label = np.asarray(label)
        if label.size and label.min() < 0:
            raise ValueError(f"label ids must be >= 0, got {int(label.min())}")
        highest = max(self.highest_id, int(label.max()) if label.size else 0)
        return self.membership(highest)[:, label]

    def reported_names(self) -> dict[int, str]:
        """Region names keyed 1 .. R: how region scores are reported (in place of class ids)."""
        return {k + 1: name for k, name in enumerate(self.names)}

    def paint(self, out: np.ndarray, index: int, probability: np.ndarray) -> None:
        """Paint region `index`'s label into `out` where `probability > THRESHOLD` (later wins)."""
        np.copyto(out, self.paint_ids[index], where=probability > THRESHOLD)

    def to_labels(self, probabilities: np.ndarray) -> np.ndarray:
        """Region probabilities or masks `(R, ...)` as a label map `(...)`, painted in order."""
        if probabilities.shape[0] != len(self):
            raise ValueError(
                f"expected {len(self)} region channels {list(self.names)}, got shape "
                f"{probabilities.shape}"
            )
        label = np.zeros(probabilities.shape[1:], dtype=label_dtype(self.highest_id))
        for index, channel in enumerate(probabilities):
            self.paint(label, index, channel)
        return label


def optional_regions(
    value: Any, label_ids: Iterable[int] | None, where: str | None, key: str = "regions"
) -> Regions | None:
    """`Regions.from_list(value, ...)`, or None when `value` is None (no regions)."""
    return None if value is None else Regions.from_list(value, label_ids, where, key)
