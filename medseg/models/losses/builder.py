"""Build MedicalSeg's `loss: {types: [...], coef: [...]}` block, ignore id included."""

from __future__ import annotations

from typing import Any

from medseg.cvlibs.errors import ConfigError
from medseg.cvlibs.registry import LOSSES
from medseg.cvlibs.sources import ConfigNode, Sources
from medseg.models.losses.mixed import set_default_ignore_index, set_regions


def build_losses(
    node: Any, ignore_index: int | None = None, regions: Any = None
) -> dict[str, list]:
    """`{"types": [loss modules], "coef": [floats]}` from a `loss:` node.

    One type with several coefs is deep supervision (one coef per output), as in MedicalSeg.
    A loss that sets no `ignore_index` of its own takes `ignore_index` (the training dataset's),
    so the losses skip the label id the data marks as unlabelled. With `regions` (the training
    dataset's, region-based training) every loss trains one sigmoid channel per region.

    Args:
        node: The `loss:` node (`Config.loss`, or a plain dict).
        ignore_index: The training dataset's ignore id, or None.
        regions: The training dataset's `Regions`, or None.

    Raises:
        ConfigError: naming `loss.types.<i>`, for a loss that cannot train regions.
    """
    if not isinstance(node, ConfigNode):
        node = ConfigNode(node, "loss", Sources()) if isinstance(node, dict) else node
    sources = node.sources if isinstance(node, ConfigNode) else Sources()
    where = sources.of("loss")
    if not isinstance(node, dict) or not isinstance(node.get("types"), list):
        raise ConfigError("expected {types: [...], coef: [...]}", where, "loss")
    coef = node.get("coef", [1.0] * len(node["types"]))
    if not isinstance(coef, list) or not all(
        isinstance(c, (int, float)) and not isinstance(c, bool) for c in coef
    ):
        raise ConfigError(
            f"expected a list of numbers, got {coef!r}", sources.of("loss.coef"), "loss.coef"
        )
    types = [
        LOSSES.build(node.child(item, f"loss.types.{i}"), f"loss.types.{i}")
        for i, item in enumerate(node["types"])
    ]
    for i, loss in enumerate(types):
        set_default_ignore_index(loss, ignore_index)
        if regions is not None:
            try:
                set_regions(loss, regions)
            except ValueError as err:
                key = f"loss.types.{i}"
                raise ConfigError(str(err), sources.of(key), key) from None
    return {"types": types, "coef": [float(c) for c in coef]}
