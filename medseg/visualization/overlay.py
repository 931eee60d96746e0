"""Draw a case's axial, coronal and sagittal planes with label outlines (matplotlib, headless).

The image is shown in grey; the reference label map as solid outlines and the prediction as a
translucent fill with dashed outlines, one colour per class, so the two stay distinguishable
even for a single class and where they overlap. The planes go through the reference (a poor
prediction must not hide it) and the grey window comes from the reference's intensities. Pixels
keep their physical proportions (anisotropic spacing is honoured with `imshow(aspect=...)`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.utils.atomic import atomic_path
from medseg.visualization.planes import (
    EDGE_LABELS,
    FILE_AXES,
    VIEWS,
    OverlayCase,
    busiest_slices,
    fixed_axis,
    intensity_window,
    plane,
    view_aspect,
    view_extent_mm,
)

REFERENCE_STYLE = "solid"
PREDICTION_STYLE = (0, (3, 2))  # dashed, short gaps so thin structures still read as closed
PREDICTION_FILL_ALPHA = 0.3


def _matplotlib() -> Any:
    """The matplotlib package, or an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "drawing overlays needs matplotlib: pip install matplotlib "
            "(or pip install -r requirements-notebook.txt)"
        ) from err
    return matplotlib


def class_colour(class_id: int) -> tuple[float, float, float, float]:
    """A distinct colour per class id (tab10, cycling)."""
    return _matplotlib().colormaps["tab10"]((int(class_id) - 1) % 10)


def _draw_outlines(ax: Any, labels: np.ndarray, class_ids: Sequence[int], style: Any) -> None:
    for class_id in class_ids:
        mask = labels == class_id
        if mask.any():
            ax.contour(
                mask.astype(np.float32),
                levels=[0.5],
                colors=[class_colour(class_id)],
                linestyles=[style],
                linewidths=1.4,
            )


def _draw_fill(ax: Any, labels: np.ndarray, class_ids: Sequence[int]) -> None:
    """The prediction's classes as translucent colour (transparent elsewhere)."""
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for class_id in class_ids:
        mask = labels == class_id
        rgba[mask] = (*class_colour(class_id)[:3], PREDICTION_FILL_ALPHA)
    ax.imshow(rgba, aspect=ax.get_aspect(), interpolation="nearest")


def _edge_labels(ax: Any, view: str) -> None:
    top, bottom, left, right = EDGE_LABELS[view]
    style = {"color": "yellow", "fontsize": 9, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)


def overlay_figure(
    case: OverlayCase,
    class_names: Mapping[int, str] | None = None,
    slices: Sequence[int] | None = None,
    window: Sequence[float] | None = None,
    title: str | None = None,
) -> Any:
    """A matplotlib Figure with the three planes of `case` and a legend.

    Args:
        case: From `load_overlay_case`.
        class_names: Id → name; missing ids are called `class_<id>`.
        slices: Voxel `(z, y, x)` in the file's array order that the three planes pass through;
            default: per view, the plane with the most reference voxels (without a reference,
            the most predicted ones).
        window: Grey-level range (low, high), e.g. (-160, 240) for CT soft tissue; default:
            from the reference's intensities, else the prediction's (see `intensity_window`).
        title: Figure title.

    Raises:
        ValueError: when `slices` is outside the volume.
    """
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    shape = case.image.shape
    file_shape = tuple(shape[case.permutation.index(a)] for a in range(3))
    reference = None if case.label is None else case.label > 0
    focus = reference if reference is not None and reference.any() else case.foreground
    if slices is None:
        lps_point = busiest_slices(focus, shape)
    else:
        inside = len(slices) == 3 and all(
            0 <= int(s) < n for s, n in zip(slices, file_shape, strict=True)
        )
        if not inside:
            raise ValueError(
                f"slices must be a voxel (z, y, x) inside the volume of shape {file_shape}, "
                f"got {list(slices)}"
            )
        lps_point = case.to_lps_index(slices)
    file_point = case.to_file_index(lps_point)
    low, high = intensity_window(case.image, window, region=focus)
    names = dict(class_names or {})
    class_ids = case.class_ids

    # Panel widths in proportion to their physical width/height, so all three get one height.
    ratios = [w / h for w, h in (view_extent_mm(shape, case.spacing, v) for v in VIEWS)]
    # A Figure without pyplot: no global backend state, headless anywhere, shown by notebooks.
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": ratios})
    for ax, view in zip(axes, VIEWS, strict=True):
        axis = fixed_axis(view)
        index = lps_point[axis]
        aspect = view_aspect(case.spacing, view)
        ax.imshow(
            plane(case.image, view, index),
            cmap="gray",
            vmin=low,
            vmax=high,
            aspect=aspect,
            interpolation="nearest",
        )
        if case.label is not None:
            _draw_outlines(ax, plane(case.label, view, index), class_ids, REFERENCE_STYLE)
        if case.prediction is not None:
            predicted = plane(case.prediction, view, index)
            _draw_fill(ax, predicted, class_ids)
            _draw_outlines(ax, predicted, class_ids, PREDICTION_STYLE)
        file_axis = case.permutation[axis]
        ax.set_title(
            f"{view}: {FILE_AXES[file_axis]} = {file_point[file_axis]} (of 0–{shape[axis] - 1})",
            fontsize=10,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        _edge_labels(ax, view)

    handles = [
        Line2D([], [], color=class_colour(i), lw=2, label=names.get(i, f"class_{i}"))
        for i in class_ids
    ]
    if case.label is not None:
        handles.append(Line2D([], [], color="black", ls=REFERENCE_STYLE, label="reference"))
    if case.prediction is not None:
        handles.append(
            Line2D([], [], color="black", ls=PREDICTION_STYLE, label="prediction (filled)")
        )
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8))
    fig.suptitle(
        (f"{title}\n" if title else "")
        + f"window [{low:g}, {high:g}]; radiological display: patient's right on the left",
        fontsize=10,
    )
    return fig


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write `fig` as a PNG atomically (a temporary name, renamed when complete)."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
