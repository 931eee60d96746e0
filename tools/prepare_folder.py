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

Several modalities: one file per modality named <case>_0000, <case>_0001, ... (nnU-Net naming) in
the images folder, in the order of --modality, or one 4D file per case.

Example (writes data/liver/ and configs/liver/; then train with the printed command):
  python tools/prepare_folder.py --images scans --labels masks --name liver --modality CT
      --label_names background liver tumour
  python train.py --config configs/liver/vnet_liver_<patch>_15000.yml --do_eval
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prepare

from medseg.preprocessing.cases import CaseFiles, RawDataset, check_labels
from medseg.preprocessing.io import READ_EXTENSIONS
from medseg.utils.label_names import read_label_names
from medseg.utils.logging import setup_logging
from medseg.utils.paths import output_inside_inputs

CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _stem(path: Path) -> str | None:
    """The case name of a volume file or DICOM series folder; None for others and junk."""
    if path.name.startswith("."):
        return None
    if path.is_dir():
        return path.name
    for ext in sorted(READ_EXTENSIONS, key=len, reverse=True):
        if path.name.lower().endswith(ext):
            return path.name[: -len(ext)]
    return None


def _volumes(folder: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.iterdir()):
        stem = _stem(path)
        if stem is not None:
            if stem in found:
                raise ValueError(f"{folder}: two files for '{stem}': {found[stem]} and {path}")
            found[stem] = path
    return found


def read_labels_arg(names: list[str] | None, labels_json: str | None) -> dict[int, str]:
    """Class names by id from --label_names or a JSON file ({"0": "background"} or nnU-Net's)."""
    if labels_json:
        return check_labels(read_label_names(labels_json), labels_json)
    if not names:
        raise ValueError("give the class names: --label_names background ... or --labels_json")
    return check_labels(dict(enumerate(names)), "--label_names")


def find_cases(
    images: Path,
    labels: Path | None,
    label_suffix: str | None,
    modalities: list[str],
    class_names: dict[int, str],
    name: str,
) -> RawDataset:
    """Pair scans and label maps by case id (see the module docstring)."""
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images} is not a folder")
    scans = _volumes(images)
    if labels is not None:
        label_files = {s.removesuffix(label_suffix or ""): p for s, p in _volumes(labels).items()}
    elif label_suffix:
        label_files = {
            s[: -len(label_suffix)]: p for s, p in scans.items() if s.endswith(label_suffix)
        }
        scans = {s: p for s, p in scans.items() if not s.endswith(label_suffix)}
    else:
        raise ValueError("give --labels DIR, or --label_suffix for labels beside the scans")
    channels: dict[str, dict[int, Path]] = {}
    for stem, path in scans.items():
        # <case>_0000 is a channel of <case> (nnU-Net naming), unless a label is named after
        # the whole stem: then it is a single-modality case whose name ends in digits.
        match = CHANNEL.match(stem)
        if match and stem not in label_files:
            case, channel = match["case"], int(match["channel"])
        else:
            case, channel = stem, None
        channels.setdefault(case, {})[channel] = path
    cases, problems = {}, {}
    for case in sorted(set(channels) | set(label_files)):
        files = channels.get(case, {})
        if not files:
            problems[case] = f"label {label_files[case]} has no scan in {images}"
        elif case not in label_files:
            problems[case] = f"scan {next(iter(files.values()))} has no label map"
        elif None in files and len(files) == 1:
            cases[case] = CaseFiles((files[None],), label_files[case])
        elif sorted(files) == list(range(len(modalities))):
            cases[case] = CaseFiles(tuple(files[i] for i in sorted(files)), label_files[case])
        elif sorted(files) == [0] and len(modalities) > 1:  # <case>_0000 holding a 4D volume
            cases[case] = CaseFiles((files[0],), label_files[case])
        else:
            found = sorted(p.name for p in files.values())
            problems[case] = f"expected one file per modality {modalities}, found {found}"
    if not cases and not problems:
        raise ValueError(f"no scans found in {images} (readable: {', '.join(READ_EXTENSIONS)})")
    return RawDataset(name, list(modalities), class_names, cases, problems)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = prepare.make_parser(__doc__)
    own = parser.add_argument_group("your data")
    own.add_argument("--images", required=True, help="folder of scans")
    own.add_argument("--labels", help="folder of label maps (default: beside the scans)")
    own.add_argument("--label_suffix", help="label file = <case><suffix>, e.g. _seg")
    own.add_argument("--label_names", nargs="+", help="class names by id, background first")
    own.add_argument("--labels_json", help='JSON {"0": "background", "1": "liver", ...}')
    own.add_argument("--modality", nargs="+", default=["CT"], help="CT, MR, ... one per channel")
    args = parser.parse_args(argv)
    images = Path(args.images)
    name = args.name or images.resolve().parent.name

    def find(_raw_dir: Path) -> RawDataset:
        class_names = read_labels_arg(args.label_names, args.labels_json)
        labels = Path(args.labels) if args.labels else None
        return find_cases(images, labels, args.label_suffix, args.modality, class_names, name)

    args.raw_dir = args.raw_dir or str(images)
    inputs = [images] + ([Path(args.labels)] if args.labels else [])
    output_dir = args.output_dir or Path("data") / name
    problem = output_inside_inputs(output_dir, inputs, "--output_dir")
    if problem is not None:
        setup_logging()
        logging.getLogger(__name__).error("%s", problem)
        return 2
    return prepare.run(args, name, find)


if __name__ == "__main__":
    sys.exit(main())
