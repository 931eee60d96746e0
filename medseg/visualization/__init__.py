"""Seeing a result: 2D overlays of image, reference and prediction (torch-free).

`planes` reads and orients a case and cuts its planes (numpy only); `overlay` draws them with
matplotlib, which is imported only when a figure is drawn.
"""

from medseg.visualization.overlay import overlay_figure, save_figure
from medseg.visualization.planes import (
    VIEWS,
    OverlayCase,
    busiest_slices,
    intensity_window,
    load_overlay_case,
    plane,
    view_aspect,
)

__all__ = [
    "VIEWS",
    "OverlayCase",
    "busiest_slices",
    "intensity_window",
    "load_overlay_case",
    "overlay_figure",
    "plane",
    "save_figure",
    "view_aspect",
]
