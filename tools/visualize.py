"""Draw one PNG of a case: axial, coronal and sagittal planes with label outlines.

The image is shown in grey, the reference label map as solid outlines and the prediction as a
translucent fill with dashed outlines, one colour per class, with a legend. The volumes are
displayed in radiological orientation (reoriented to LPS by flips and axis swaps, no
interpolation): axial viewed from the feet with anterior up, coronal from the front, sagittal
from the patient's left; the patient's right is on the viewer's left. Pixels keep their physical
proportions.

By default each plane is the one holding the most reference voxels in its direction (without
`--label`, the most predicted ones), so a poor prediction never hides the reference, and the grey
window comes from the reference's intensities; `--slices Z Y X` names a voxel, in the file's
array order, that the three planes pass through instead.

Usage:
    python tools/visualize.py --image data/phantom/raw/imagesTr/phantom_000_0000.nii.gz \
        --label data/phantom/raw/labelsTr/phantom_000.nii.gz \
        --pred output/vnet_phantom/val/predictions/phantom_000.nii.gz \
        --labels_json data/phantom/raw/dataset.json --out phantom_000.png
    python tools/visualize.py --dataset data/liver --case liver_007 \
        --pred output/liver/val/predictions/liver_007.nii.gz --out liver_007.png

With `--dataset` (a prepared folder) the scan and reference come from its dataset.json, and the
reference's raw ids are turned into the training ids (`--label_map`, `--ignore_labels` of the
preparation) so that it is drawn class for class against the prediction.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never open a window


from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.description import load_description, read_class_names
from medseg.utils.help_format import HelpFormatter
from medseg.visualization import load_overlay_case, overlay_figure, save_figure

logger = logging.getLogger("medseg.visualize")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--image", help="scan (NIfTI, MHA, NRRD); default: --case's in --dataset")
    parser.add_argument(
        "--label", help="reference label map on the image's grid; default: --case's in --dataset"
    )
    parser.add_argument("--pred", help="predicted label map on the image's grid")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--labels_json", help="dataset.json whose 'labels' names the classes (medseg or nnU-Net)"
    )
    parser.add_argument(
        "--dataset",
        help="a prepared dataset folder: class names, and the --label_map/--ignore_labels rules "
        "applied to the raw reference, come from its dataset.json",
    )
    parser.add_argument("--case", help="case id in --dataset whose raw scan and label to show")
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
        "percentile inside the reference, widened by half its width on each side)",
    )
    parser.add_argument("--dpi", type=int, default=120, help="PNG resolution")
    return parser.parse_args(argv)


def _inputs(
    args: argparse.Namespace,
) -> tuple[Path, Path | None, dict[int, str], LabelRules | None]:
    """Image, reference, class names and label rules from the flags (and --dataset)."""
    names = read_class_names(args.labels_json) if args.labels_json else {}
    if args.dataset is None:
        if args.case is not None:
            raise ValueError("--case names a case of --dataset: give --dataset too")
        if args.image is None:
            raise ValueError("give --image, or --dataset and --case")
        return Path(args.image), args.label and Path(args.label), names, None
    description = load_description(args.dataset)
    image, label = args.image, args.label
    if args.case is not None:
        if args.case not in description.cases:
            raise ValueError(f"{description.path}: no case {args.case!r} recorded")
        sources = description.source_image_paths(args.case)
        image = image or (sources[0] if sources else None)
        label = label or description.source_label_path(args.case)
    if image is None:
        raise ValueError("give --image, or --case to take the scan from --dataset")
    return Path(image), label and Path(label), names or description.labels, description.label_rules


def main(argv: list[str] | None = None) -> int:
    """Draw and write the PNG; returns the exit code (2 on bad input)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        image, label, names, rules = _inputs(args)
        case = load_overlay_case(image, label, args.pred, label_rules=rules)
        fig = overlay_figure(
            case, names, slices=args.slices, window=args.window, title=Path(image).name
        )
        save_figure(fig, args.out, dpi=args.dpi)
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
