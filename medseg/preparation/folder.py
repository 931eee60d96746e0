"""Prepare your own labelled scans for training: no code, one command.

Where to get the data: your own scans and label maps (NIfTI .nii/.nii.gz, MHA/MHD, NRRD, or
DICOM series, one folder per scan).

Layouts (cases are paired by case id, sorted; a scan without a label or a label without a scan
is reported and skipped):

  two folders                              one folder, a naming rule (--label_suffix _seg)
    scans/liver_001.nii.gz                   data/liver_001.nii.gz
    masks/liver_001.nii.gz                   data/liver_001_seg.nii.gz
  python tools/prepare_folder.py --images scans --labels masks ...
  python tools/prepare_folder.py --images data --label_suffix _seg ...

  Scans named with a suffix too (data/liver_001_image.nii.gz beside data/liver_001_label.nii.gz):
  python tools/prepare_folder.py --images data --image_suffix _image --label_suffix _label ...

Several modalities: one file per modality named <case>_0000, <case>_0001, ... (nnU-Net naming) in
the images folder, in the order of --modality, or one 4D file per case.

Example (writes data/liver/ and configs/liver/; then train with the printed command):
  python tools/prepare_folder.py --images scans --labels masks --name liver --modality CT
      --label_names background liver tumour
  python train.py --config configs/liver/vnet_liver_<plan>.yml --save_dir output/liver --do_eval
"""

from __future__ import annotations

import logging
from pathlib import Path

from medseg.preparation import driver
from medseg.preprocessing.cases import RawDataset, check_labels
from medseg.preprocessing.description import read_class_names
from medseg.preprocessing.formats.folder import read_folder
from medseg.utils.logging import setup_logging
from medseg.utils.paths import output_inside_inputs


def read_labels_arg(names: list[str] | None, labels_json: str | None) -> dict[int, str]:
    """Class names by id from --label_names or a JSON file ({"0": "background"} or nnU-Net's)."""
    if labels_json:
        return check_labels(read_class_names(labels_json), labels_json)
    if not names:
        raise ValueError("give the class names: --label_names background ... or --labels_json")
    return check_labels(dict(enumerate(names)), "--label_names")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__, raw_dir=False, downloads=False)
    own = parser.add_argument_group("your data")
    own.add_argument("--images", required=True, help="folder of scans")
    own.add_argument("--labels", help="folder of label maps (default: beside the scans)")
    own.add_argument("--label_suffix", help="label file = <case><suffix>, e.g. _seg")
    own.add_argument("--image_suffix", help="scan file = <case><suffix>, e.g. _image")
    own.add_argument("--label_names", nargs="+", help="class names by id, background first")
    own.add_argument("--labels_json", help='JSON {"0": "background", "1": "liver", ...}')
    own.add_argument("--modality", nargs="+", default=["CT"], help="CT, MR, ... one per channel")
    args = parser.parse_args(argv)
    images = Path(args.images)
    name = args.name or images.resolve().parent.name

    def find(_raw_dir: Path) -> RawDataset:
        class_names = read_labels_arg(args.label_names, args.labels_json)
        labels = Path(args.labels) if args.labels else None
        return read_folder(
            images, labels, args.label_suffix, args.modality, class_names, name, args.image_suffix
        )

    args.raw_dir = args.raw_dir or str(images)
    inputs = [images] + ([Path(args.labels)] if args.labels else [])
    output_dir = args.output_dir or Path("data") / name
    problem = output_inside_inputs(output_dir, inputs, "--output_dir")
    if problem is not None:
        setup_logging()
        logging.getLogger(__name__).error("%s", problem)
        return 2
    return driver.run(args, name, find)
