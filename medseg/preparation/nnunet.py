"""Prepare an nnU-Net v2 raw dataset folder (DatasetXXX_Name) for medseg.

Where to get the data: any dataset already converted for nnU-Net v2 (its raw folder, e.g.
$nnUNet_raw/Dataset003_Liver), or your own data arranged that way.

Expected layout (https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md):
  DatasetXXX_Name/dataset.json     {"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                    "liver": 1}, "numTraining": N, "file_ending": ".nii.gz"}
  DatasetXXX_Name/imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz ... (one file per channel)
  DatasetXXX_Name/labelsTr/<case>.nii.gz
An "ignore" label (nnU-Net's partial annotations; it must have the highest id) is set to 255,
which the losses skip, instead of becoming a class. Region-based labels are not supported.

Example:
  medseg-prepare nnunet --raw_dir $nnUNet_raw/Dataset003_Liver --folds 5
"""

from __future__ import annotations

from pathlib import Path

from medseg.preparation import driver
from medseg.preprocessing.formats.nnunet import read_nnunet_raw


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    args = parser.parse_args(argv)
    if not args.raw_dir:
        parser.error("--raw_dir DatasetXXX_Name is required (nnU-Net raw data is not downloaded)")
    name = Path(args.raw_dir).resolve().name
    return driver.run(args, name, lambda raw_dir: read_nnunet_raw(raw_dir, strict=False))
