"""The arg-max over classes of linearly resampled probabilities, resampling only what can win.

Linear resampling makes each output voxel a convex combination of the source voxels around it
(two per changed axis: its "cell"), so a class's resampled value lies between its minimum and its
maximum over the cell. A class whose cell maximum is below the largest cell minimum of any class
can never win there. Where one class survives (inside organs and background: most of a scan)
it is the label and nothing is resampled. Where several survive (near boundaries), a tile of
output rows is resampled for the classes that survive somewhere in it, by the caller's exact
resampling, and arg-maxed as the whole-volume path does (ties keep the lower id). So the labels
equal the arg-max of every resampled class bit for bit while most classes are never resampled
in most of the scan. `MARGIN` covers float32 rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Candidate slack relative to the largest magnitude: three float32 lerps round by < 1e-6 of it.
MARGIN = 1e-5
# Above this share of (class, tile) resamplings the caller resamples every class everywhere.
FULL_SHARE = 0.8
# Output voxels per tile of rows: smaller tiles hold fewer surviving classes, more calls.
TILE_VOXELS = 1 << 17


@dataclasses.dataclass(frozen=True)
class AxisTaps:
    """Linear-resampling taps along one axis and the distinct source pairs ("cells") they use.

    Attributes:
        lower: Lower source index per output index (relative to the source array given).
        upper: Upper source index per output index.
        pair_lower: Lower source index of each distinct (lower, upper) pair.
        pair_upper: Upper source index of each pair.
        pair_of: The pair of each output index.
        resampled: Whether a resampling pass runs along this axis (else output i is source i).
    """

    lower: np.ndarray
    upper: np.ndarray
    pair_lower: np.ndarray
    pair_upper: np.ndarray
    pair_of: np.ndarray
    resampled: bool

    @classmethod
    def from_taps(cls, lower: np.ndarray, upper: np.ndarray, resampled: bool) -> AxisTaps:
        """Group the output indices by the source pair they interpolate from."""
        stride = int(upper.max(initial=0)) + 1
        pairs, pair_of = np.unique(lower.astype(np.int64) * stride + upper, return_inverse=True)
        return cls(
            lower=lower,
            upper=upper,
            pair_lower=(pairs // stride).astype(np.intp),
            pair_upper=(pairs % stride).astype(np.intp),
            pair_of=pair_of.reshape(-1).astype(np.intp),
            resampled=resampled,
        )


def _cell_extreme(channel: np.ndarray, axes: Sequence[AxisTaps], op: np.ufunc) -> np.ndarray:
    """`op` (np.minimum or np.maximum) of `channel` over each cell (one pair per axis)."""
    out = channel
    for axis, taps in enumerate(axes):
        if taps.resampled:  # else the pairs are (i, i): every source index, itself
            low = np.take(out, taps.pair_lower, axis=axis)
            out = op(low, np.take(out, taps.pair_upper, axis=axis), out=low)
    return out


def _expand(cells: np.ndarray, axes: Sequence[AxisTaps], out: np.ndarray | None = None) -> Any:
    """Per output voxel, the value of its cell (one `take` per axis, the last into `out`)."""
    for axis, taps in enumerate(axes):
        last = axis == len(axes) - 1
        target = out if last and out is not None else None
        cells = np.take(cells, taps.pair_of, axis=axis, out=target, mode="clip")
    return cells


def _row_tiles(rows: AxisTaps, row_voxels: int) -> list[tuple[int, int, int, int]]:
    """Tiles of output rows (axis 1): `(first row, stop row, first cell row, stop cell row)`."""
    count = rows.pair_of.size
    step = max(1, TILE_VOXELS // max(row_voxels, 1))
    return [
        (
            y0,
            min(y0 + step, count),
            int(rows.pair_of[y0]),
            int(rows.pair_of[min(y0 + step, count) - 1]) + 1,
        )
        for y0 in range(0, count, step)
    ]


def interpolated_argmax(
    probabilities: np.ndarray,
    axes: Sequence[AxisTaps],
    out: np.ndarray,
    resample_rows: Callable[[int, int, int], np.ndarray],
) -> bool:
    """Write the arg-max over classes of `probabilities` resampled by `axes` into `out`.

    Args:
        probabilities: float32 `(K, z, y, x)` on the source grid (the voxels the taps refer to).
        axes: Taps per spatial axis, from the source to `out`'s grid.
        out: Integer label array of the output grid, written in place.
        resample_rows: `(class, first row, stop row)` → that class resampled onto output rows
            `first .. stop` (axis 1) of `out`'s grid, exactly as the whole-volume path does.

    Returns:
        False, with `out` untouched, when so many classes survive that resampling every class
        everywhere is cheaper; else True.
    """
    num_classes = probabilities.shape[0]
    scale = max(1.0, float(probabilities.max()), -float(probabilities.min()))
    floor = None  # the largest cell minimum over the classes
    for channel in probabilities:
        low = _cell_extreme(channel, axes, np.minimum)
        floor = low.copy() if floor is None else np.maximum(floor, low, out=floor)
    threshold = floor - np.float32(MARGIN * scale)
    candidates = np.empty((*floor.shape, num_classes), dtype=bool)  # classes last: per cell
    for k, channel in enumerate(probabilities):
        np.greater_equal(
            _cell_extreme(channel, axes, np.maximum), threshold, out=candidates[..., k]
        )
    contested_cells = candidates.sum(axis=-1, dtype=np.int32) > 1
    plan, rows_resampled = [], 0
    for y0, y1, c0, c1 in _row_tiles(axes[1], out.shape[0] * out.shape[2]):
        contested = contested_cells[:, c0:c1]
        if contested.any():
            survivors = np.flatnonzero(candidates[:, c0:c1][contested].any(axis=0))
            plan.append((y0, y1, survivors))
            rows_resampled += survivors.size * (y1 - y0)
    if rows_resampled > FULL_SHARE * num_classes * out.shape[1]:
        return False
    _expand(candidates.argmax(axis=-1).astype(out.dtype), axes, out)  # each cell's first
    if not plan:
        return True
    contested_voxels = _expand(contested_cells, axes)
    for y0, y1, survivors in plan:
        best = wins = None
        label = np.empty_like(out[:, y0:y1])
        for k in survivors.tolist():
            score = resample_rows(k, y0, y1)
            if best is None:
                best, wins = np.array(score, dtype=np.float32), np.empty(score.shape, bool)
                label[...] = k
                continue
            np.greater(score, best, out=wins)  # ascending ids, strictly greater: as argmax
            np.copyto(label, k, where=wins)
            np.copyto(best, score, where=wins)
        np.copyto(out[:, y0:y1], label, where=contested_voxels[:, y0:y1])
    return True
