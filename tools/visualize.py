"""Draw one PNG of a case: axial, coronal and sagittal planes with label outlines.

The image is shown in grey, the reference label map as solid outlines and the prediction as
dashed outlines, one colour per class, with a legend. The volumes are displayed in radiological
orientation (reoriented to LPS by flips and axis swaps, no interpolation): axial viewed from the
feet with anterior up, coronal from the front, sagittal from the patient's left; the patient's
right is on the viewer's left. Pixels keep their physical proportions.

By default each plane is the one holding the most labelled voxels (reference or prediction) in
its direction; `--slices Z Y X` names a voxel, in the file's array order, that the three planes
pass through instead.

Usage:
    python tools/visualize.py --image data/phantom/raw/imagesTr/phantom_000_0000.nii.gz \
        --label data/phantom/raw/labelsTr/phantom_000.nii.gz \
        --pred output/vnet_phantom/val/predictions/phantom_000.nii.gz \
        --labels_json data/phantom/raw/dataset.json --out phantom_000.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never open a window


from medseg.preprocessing.description import read_class_names
from medseg.visualization import load_overlay_case, overlay_figure, save_figure

logger = logging.getLogger("medseg.visualize")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", required=True, help="scan (NIfTI, MHA, NRRD)")
    parser.add_argument("--label", help="reference label map on the image's grid")
    parser.add_argument("--pred", help="predicted label map on the image's grid")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--labels_json", help="dataset.json whose 'labels' names the classes (medseg or nnU-Net)"
    )
    parser.add_argument(
        "--slices",
        nargs=3,
        type=int,
        metavar=("Z", "Y", "X"),
        help="voxel index (file array order) the three planes pass through",
    )
    parser.add_argument(
        "--window",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="grey-level range, e.g. -160 240 for CT soft tissue (default: the 1st-99th "
        "percentile inside the labelled structures, widened by half its width on each side)",
    )
    parser.add_argument("--dpi", type=int, default=120, help="PNG resolution")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Draw and write the PNG; returns the exit code (2 on bad input)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        names = read_class_names(args.labels_json) if args.labels_json else {}
        case = load_overlay_case(args.image, args.label, args.pred)
        fig = overlay_figure(
            case, names, slices=args.slices, window=args.window, title=Path(args.image).name
        )
        save_figure(fig, args.out, dpi=args.dpi)
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
