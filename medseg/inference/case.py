"""One case, from a scan (or a preprocessed case and its record) to its final label map.

The funnel every prediction goes through, torch-free: `val.py` and training-time evaluation
drive it with a torch predictor, the deploy runner and `Segmenter` with onnxruntime, so a score
is the score of the file a user gets. Steps: preprocessing (from a scan) → streaming sliding
window → softmax → back-mapping onto the scan's grid by a running argmax (`SlabBackMapper`) →
largest-component filter. The class-channel buffers span one band of windows, never the scan.
A region-trained model (`regions`) has one sigmoid channel per region: sigmoid instead of
softmax, and the back-mapping paints the resampled regions in order (`Regions.paint`).

Several predictors are an ensemble (e.g. cross-validation folds): each runs its own sliding
window in lockstep with the others, each blended band goes through its softmax (sigmoid), and
the bands' probabilities are averaged, which equals averaging the models' whole-volume
probabilities (nnU-Net's ensembling) with memory of one band per model; two identical models
give exactly one model's prediction.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from medseg.inference.postprocess import keep_largest_component
from medseg.inference.settings import InferenceSettings
from medseg.inference.sliding_window import (
    sigmoid,
    sliding_window_inference,
    sliding_window_slabs,
    softmax,
)
from medseg.inference.timing import StageTimer
from medseg.preprocessing.backmap import SlabBackMapper
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import (
    PreprocessRecord,
    invert_probabilities,
    preprocess_case,
    preprocessed_geometry,
)
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.regions import Regions
from medseg.utils.vocabulary import EVAL_SPACES, label_dtype

Predictor = Callable[[np.ndarray], np.ndarray]
SPACES = EVAL_SPACES[1:]  # a resolved space: "original" or "preprocessed"
OUTPUT_KINDS = ("logits", "probabilities")


def predict_logits(
    image: np.ndarray, predictor: Predictor, settings: InferenceSettings, num_classes: int
) -> np.ndarray:
    """Blended network output `(K, Z, Y, X)` of one preprocessed image, held whole.

    For comparing predictors; predictions go through `CasePipeline`, which never holds it.
    """
    return sliding_window_inference(
        image, predictor, num_classes=num_classes, **settings.window_arguments()
    )


@dataclasses.dataclass(frozen=True)
class CasePrediction:
    """The final prediction of one case.

    Attributes:
        label: Integer label map `(Z, Y, X)` on `geometry`'s grid, post-processed.
        geometry: The scan's own geometry ("original" space) or the preprocessed grid's.
        probabilities: float32 `(K, Z, Y, X)` on the same grid when asked for (region models:
            one channel per region), else None.
    """

    label: np.ndarray
    geometry: Geometry
    probabilities: np.ndarray | None = None


class CasePipeline:
    """Predict cases with one model (or an ensemble) and one set of settings.

    Args:
        predictor: Maps a float32 batch `(B, C, z, y, x)` to `(B, K, z, y, x)`; a list of them
            is an ensemble whose probabilities are averaged.
        settings: Sliding-window settings (window, overlap, blending, mirror axes).
        num_classes: K, background included (the label map's classes).
        output: What the predictor returns: "logits" (softmax, or sigmoid with regions, applied
            here) or "probabilities".
        largest_component: Class ids reduced to their largest connected component.
        backend: "numpy" or "cupy", for the back-mapping passes.
        regions: The regions a region-trained predictor returns, one channel each (None: K
            class channels).
    """

    def __init__(
        self,
        predictor: Predictor | Sequence[Predictor],
        settings: InferenceSettings,
        num_classes: int,
        output: str = "logits",
        largest_component: Sequence[int] = (),
        backend: str = "numpy",
        regions: Regions | None = None,
    ):
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
        self.predictors = list(predictor) if isinstance(predictor, (list, tuple)) else [predictor]
        if not self.predictors:
            raise ValueError("an ensemble needs at least one predictor")
        self.predictor = self.predictors[0]
        self.settings = settings
        self.num_classes = num_classes
        self.output = output
        self.largest_component = tuple(largest_component)
        self.backend = backend
        self.regions = regions
        self.channels = num_classes if regions is None else len(regions)

    def _slabs(
        self, image: np.ndarray, timer: StageTimer | None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """The blended slabs; windows timed as "inference", work on a slab as "postprocess".

        An ensemble's slabs are its members' mean probabilities (every member's windows tile
        the image alike, so their bands line up).
        """
        window = self.settings.window_arguments()
        slabs = [
            sliding_window_slabs(image, predictor, num_classes=self.channels, **window)
            for predictor in self.predictors
        ]
        while True:
            with stage(timer, "inference"):
                items = [next(member, None) for member in slabs]
            if items[0] is None:
                return
            with stage(timer, "postprocess"):
                yield items[0][0], self._mean_probabilities([slab for _, slab in items])

    def _mean_probabilities(self, slabs: list[np.ndarray]) -> np.ndarray:
        """One model's slab as it is; an ensemble's members' probabilities averaged in place."""
        if len(slabs) == 1:
            return slabs[0]
        total = self._member_probabilities(slabs[0])
        for slab in slabs[1:]:
            total += self._member_probabilities(slab)
        total /= len(slabs)
        return total

    def _member_probabilities(self, slab: np.ndarray) -> np.ndarray:
        """Softmax (sigmoid with regions) of one model's logits slab, in place."""
        if self.output != "logits":
            return slab
        if self.regions is not None:
            return sigmoid(slab, out=slab)
        return softmax(slab, axis=0, out=slab)

    def _finish(self, label: np.ndarray) -> np.ndarray:
        if not self.largest_component:
            return label
        return keep_largest_component(label, self.largest_component)

    def preprocessed(
        self,
        image: np.ndarray,
        record: PreprocessRecord,
        space: str = "original",
        probabilities: bool = False,
        timer: StageTimer | None = None,
    ) -> CasePrediction:
        """Predict a preprocessed image `(C, Z, Y, X)` whose preprocessing `record` describes.

        "original" maps the prediction onto the scan's own grid; "preprocessed" keeps the
        argmax of the network's output on the preprocessed grid. `timer` receives the
        "inference" and "postprocess" (back-mapping, filter) times.
        """
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if tuple(image.shape[1:]) != record.shape_after_resample:
            raise ValueError(
                f"the image has spatial shape {tuple(image.shape[1:])} but its preprocessing "
                f"record gives {record.shape_after_resample}"
            )
        kept: list[np.ndarray] = []
        if space == "preprocessed":
            label = np.empty(image.shape[1:], dtype=label_dtype(self.num_classes - 1))
            for start, slab in self._slabs(image, timer):
                planes = slice(start, start + slab.shape[1])
                if self.regions is None:
                    label[planes] = slab.argmax(axis=0)  # the softmax keeps the argmax
                if probabilities or self.regions is not None:
                    slab = self._probabilities(slab)
                if self.regions is not None:
                    label[planes] = self.regions.to_labels(slab)
                if probabilities:
                    kept.append(slab.copy())
            with stage(timer, "postprocess"):
                maps = np.concatenate(kept, axis=1) if probabilities else None
                label = self._finish(label)
            return CasePrediction(label, preprocessed_geometry(record), maps)
        mapper = SlabBackMapper(record, self.channels, self.backend, self.regions)
        for start, slab in self._slabs(image, timer):
            slab = self._probabilities(slab)
            if probabilities:
                kept.append(slab.copy())
            mapper.add(start, slab)
        with stage(timer, "postprocess"):
            maps = None
            if probabilities:
                background = 0 if self.regions is None else None  # regions: 0 outside the box
                maps = np.concatenate(kept, axis=1)
                maps = invert_probabilities(maps, record, self.backend, background)
            label = self._finish(mapper.result())
        return CasePrediction(label, record.geometry, maps)

    def _probabilities(self, slab: np.ndarray) -> np.ndarray:
        """Softmax (sigmoid with regions) of a logits slab, in place (the blender's own band).

        An ensemble's slabs are probabilities already.
        """
        if len(self.predictors) > 1:
            return slab
        return self._member_probabilities(slab)

    def preprocess(
        self,
        image: np.ndarray,
        geometry: Geometry,
        recipe: Recipe,
        case: str = "case",
        timer: StageTimer | None = None,
    ) -> tuple[np.ndarray, PreprocessRecord]:
        """The training preprocessing of a scan `(C, Z, Y, X)`: the network's input and record."""
        with stage(timer, "preprocess"):
            image, _, record = preprocess_case(
                image, geometry, recipe, case=case, backend=self.backend
            )
        return image, record

    def scan(
        self,
        image: np.ndarray,
        geometry: Geometry,
        recipe: Recipe,
        case: str = "case",
        probabilities: bool = False,
        timer: StageTimer | None = None,
    ) -> CasePrediction:
        """Preprocess a scan `(C, Z, Y, X)` with `recipe` and predict it on its own grid."""
        image, record = self.preprocess(image, geometry, recipe, case, timer)
        return self.preprocessed(image, record, "original", probabilities, timer)


def stage(timer: StageTimer | None, name: str) -> contextlib.AbstractContextManager:
    """`timer.stage(name)`, or nothing without a timer."""
    return contextlib.nullcontext() if timer is None else timer.stage(name)
