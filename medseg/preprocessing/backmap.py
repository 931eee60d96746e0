"""Class probabilities on the preprocessed grid → a label map on the scan's grid, slab by slab.

The probabilities arrive as slabs along the preprocessed array's first axis, in order (the
streaming sliding window yields them as soon as no later window touches them). Each class is
resampled linearly onto the cropped scan grid and reduced by a running argmax, a few output
planes at a time, so memory stays bounded whatever the class count: one slab of K channels plus
a few float32 planes of the scan, never a K-channel copy of the scan. Resampling is separable, so
an output plane needs two input planes along that axis; the planes are computed by the same
passes as a whole-volume resample (`linear_box`), and the labels equal
`invert_probabilities(...).argmax(0)` exactly (ties keep the lower class id, as `argmax` does).

Region probabilities (region-based training) are reduced by painting instead: each resampled
region paints its label where it exceeds one half, in order (`Regions.paint`), which equals
`regions.to_labels(invert_probabilities(...))`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from medseg.preprocessing.crop import pad_from_box
from medseg.preprocessing.interpolated_argmax import AxisTaps, interpolated_argmax
from medseg.preprocessing.orientation import undo_reorient
from medseg.preprocessing.resample import linear_box, linear_taps
from medseg.utils.vocabulary import label_dtype

if TYPE_CHECKING:
    from medseg.preprocessing.pipeline import PreprocessRecord
    from medseg.preprocessing.regions import Regions

# Output voxels per step: its float32 planes (current class, best so far) stay within a few
# tens of MB and in cache-friendly blocks; with many classes, fewer (the candidate masks are
# classes × cells).
STEP_VOXELS = 1 << 22
STEP_CLASSES = 32


class SlabBackMapper:
    """Collect probability slabs `(K, dz, Y, X)` and build the label map on the scan's grid.

    Args:
        record: The case's preprocessing record.
        num_classes: K, the channels (with `regions`: one per region).
        backend: "numpy" or "cupy", for the resampling passes.
        regions: The channels are these regions' probabilities (None: class probabilities).
    """

    def __init__(
        self,
        record: PreprocessRecord,
        num_classes: int,
        backend: str = "numpy",
        regions: Regions | None = None,
    ):
        if regions is not None and len(regions) != num_classes:
            raise ValueError(f"{num_classes} channels for {len(regions)} regions")
        self.record = record
        self.num_classes = num_classes
        self.backend = backend
        self.regions = regions
        self.depth = record.shape_after_resample[0]
        source, shape = record.shape_after_resample, record.shape_after_crop
        self.lower, self.upper, _ = linear_taps(self.depth, shape[0])
        self.plane_taps = [
            AxisTaps.from_taps(*linear_taps(source[a], shape[a])[:2], source[a] != shape[a])
            for a in (1, 2)
        ]
        highest = num_classes - 1 if regions is None else regions.highest_id
        self.label = np.zeros(record.shape_after_crop, dtype=label_dtype(highest))
        self._held: np.ndarray | None = None  # earlier input planes still needed
        self._held_start = 0
        self._slab: np.ndarray | None = None  # the slab being reduced
        self._slab_start = 0
        self._received = 0  # input planes received so far
        self._done = 0  # output planes written so far

    def add(self, start: int, probabilities: np.ndarray) -> None:
        """Take input planes `start ..` (they must follow the previous slab) and reduce what can.

        The slab may be reused by the caller afterwards: the few planes still needed are copied.
        """
        expected = (self.num_classes, *self.record.shape_after_resample[1:])
        if probabilities.ndim != 4 or (probabilities.shape[0], *probabilities.shape[2:]) != (
            expected
        ):
            raise ValueError(
                f"probability slab has shape {probabilities.shape}; expected "
                f"({expected[0]}, dz, {expected[1]}, {expected[2]})"
            )
        if start != self._received:
            raise ValueError(f"slab starts at plane {start}, expected {self._received}")
        self._slab, self._slab_start = probabilities, start
        self._received = start + probabilities.shape[1]
        ready = int(np.searchsorted(self.upper, self._received))  # outputs whose planes arrived
        self._reduce(ready)
        if self._done < len(self.lower):
            self._held = self._planes(int(self.lower[self._done]), self._received).copy()
            self._held_start = int(self.lower[self._done])
        else:
            self._held = None
        self._slab = None

    def _planes(self, low: int, high: int) -> np.ndarray:
        """Input planes `low .. high`, from the held planes and the current slab.

        A view when they all lie in one of them, else a copy of just these planes.
        """
        slab, first = self._slab, self._slab_start
        if low >= first:
            return slab[:, low - first : high - first]
        held = self._held[:, low - self._held_start :]
        if high <= first:
            return held[:, : high - low]
        return np.concatenate([held, slab[:, : high - first]], axis=1)

    def _reduce(self, stop: int) -> None:
        """Write output planes `_done .. stop`.

        Class probabilities: the classes' bounds decide most voxels (`interpolated_argmax`); a
        step where they leave too much contested, or on the CuPy backend, resamples every class.
        Region probabilities: every region is resampled and painted.
        """
        plane = int(np.prod(self.label.shape[1:]))
        voxels = STEP_VOXELS // max(1, self.num_classes // STEP_CLASSES)
        step = max(1, voxels // max(plane, 1))
        for first in range(self._done, stop, step):
            last = min(first + step, stop)
            lo, hi = int(self.lower[first]), int(self.upper[last - 1]) + 1
            slab = self._planes(lo, hi)
            out = self.label[first:last]
            if self.backend == "numpy" and self.regions is None:
                depth_taps = AxisTaps.from_taps(
                    self.lower[first:last] - lo,
                    self.upper[first:last] - lo,
                    self.depth != self.label.shape[0],
                )
                axes = (depth_taps, *self.plane_taps)
                rows = functools.partial(self._resample_rows, slab, (first, last), lo)
                if interpolated_argmax(slab, axes, out, rows):
                    continue
            self._resample_every_class(slab, first, last, lo, out)
        self._done = max(self._done, stop)

    def _resample_rows(
        self, slab: np.ndarray, planes: tuple[int, int], lo: int, k: int, y0: int, y1: int
    ) -> np.ndarray:
        """Class `k` resampled onto output planes `planes`, rows `y0 .. y1` (all columns)."""
        source, shape = self.record.shape_after_resample, self.record.shape_after_crop
        rows = self.plane_taps[0]
        first, stop = (int(rows.lower[y0]), int(rows.upper[y1 - 1]) + 1)
        box = (planes, (y0, y1), (0, shape[2]))
        return linear_box(slab[k, :, first:stop], source, shape, box, (lo, first, 0), self.backend)

    def _resample_every_class(
        self, slab: np.ndarray, first: int, last: int, lo: int, out: np.ndarray
    ) -> None:
        """Output planes `first .. last` from every channel resampled.

        A running argmax over the classes, or the regions painted in order.
        """
        source, shape = self.record.shape_after_resample, self.record.shape_after_crop
        box = ((first, last), (0, shape[1]), (0, shape[2]))
        best = None
        for k, channel in enumerate(slab):
            score = linear_box(channel, source, shape, box, (lo, 0, 0), self.backend)
            if self.regions is not None:
                self.regions.paint(out, k, score)  # out starts as background
                continue
            if best is None:
                best = np.array(score, dtype=np.float32)
                out[...] = k
                wins = np.empty(best.shape, dtype=bool)
                continue
            np.greater(score, best, out=wins)  # ties keep the lower id, as argmax does
            np.copyto(out, k, where=wins)
            np.copyto(best, score, where=wins)

    def result(self) -> np.ndarray:
        """The label map on the scan's own grid (crop box padded with 0, orientation undone)."""
        if self._done != len(self.lower):
            raise ValueError(
                f"only {self._received} of {self.depth} preprocessed planes were given; the label "
                "map is incomplete"
            )
        record = self.record
        label = pad_from_box(self.label, record.crop_box, record.shape_after_reorient, 0)
        return np.ascontiguousarray(undo_reorient(label, record.permutation, record.flips))
