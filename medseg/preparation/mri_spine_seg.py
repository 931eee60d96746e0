"""Prepare MRSpineSeg: sagittal T2 MR scans of the spine, 10 vertebrae and 9 discs labelled.

Where to get the data: https://www.spinesegmentation-challenge.com/ (Southern Medical
University). Sign the dataset use agreement and e-mail it to the organisers, who send a download
link; research use only, no commercial use without permission; cite Pang et al., SpineParseNet,
IEEE TMI 40(1), 2021. The data cannot be downloaded automatically: pass --raw_dir.

Expected layout (--raw_dir is the folder holding MR/ and Mask/, or any folder above it, such as
the extracted training archive; an MR/ folder without a Mask/ beside it, a test set, is skipped):
  train/MR/Case1.nii.gz, Case2.nii.gz ...
  train/Mask/mask_case1.nii.gz, mask_case2.nii.gz ...
Label ids (the challenge's): 0 background; vertebrae 1 S, 2 L5, 3 L4, 4 L3, 5 L2, 6 L1, 7 T12,
8 T11, 9 T10, 10 T9; discs 11 L5/S, 12 L4/L5, 13 L3/L4, 14 L2/L3, 15 L1/L2, 16 T12/L1,
17 T11/T12, 18 T10/T11, 19 T9/T10: MedicalSeg's 20-class setting. --three_classes merges them
into background, vertebrae and discs (MedicalSeg's class3 setting).

Recipe defaults: the planned ("auto") spacing, which keeps the thick sagittal slices, and a
z-score of each scan. Output: data/MRSpineSeg/MRI_spine_seg_phase0_class20_big_12 (class3 with
--three_classes), the folder configs/mri_spine_seg/*.yml read; generated configs with the planned
patch go to configs/mri_spine_seg/generated/.

Example:
  medseg-prepare mri_spine_seg --raw_dir ~/Downloads/MRSpineSeg/train
  python train.py --config configs/mri_spine_seg/vnet_mri_spine_seg_512_512_12_15k.yml
"""

from __future__ import annotations

from pathlib import Path

from medseg.preparation import driver
from medseg.preprocessing.archive import is_junk
from medseg.preprocessing.cases import CaseFiles, RawDataset

VERTEBRAE = ["S", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9"]
DISCS = ["L5-S", "L4-L5", "L3-L4", "L2-L3", "L1-L2", "T12-L1", "T11-T12", "T10-T11", "T9-T10"]
LABELS = dict(enumerate(["background", *VERTEBRAE, *DISCS]))
THREE_CLASSES = {0: "background", 1: "vertebrae", 2: "discs"}
MERGE = {i: 1 if i <= len(VERTEBRAE) else 2 for i in range(1, len(LABELS))}


def _volumes(folder: Path, prefix: str = "") -> dict[str, Path]:
    """NIfTI files by lower-case case id (`prefix` removed from the name)."""
    return {
        p.name.lower().removesuffix(".nii.gz").removeprefix(prefix): p
        for p in sorted(folder.glob("*.nii.gz"))
        if not is_junk(p.name)
    }


def find_cases(raw_dir: Path, labels: dict[int, str]) -> RawDataset:
    """Pair MR/Case<N> with Mask/mask_case<N> in every MR/ folder that has a Mask/ beside it."""
    folders = [
        p for p in sorted(raw_dir.rglob("MR")) if p.is_dir() and (p.parent / "Mask").is_dir()
    ]
    if raw_dir.name == "MR" and (raw_dir.parent / "Mask").is_dir():
        folders.append(raw_dir)
    if not folders:
        raise FileNotFoundError(f"no MR/ folder with a Mask/ folder beside it under {raw_dir}")
    cases, problems = {}, {}
    for folder in folders:
        scans, masks = _volumes(folder), _volumes(folder.parent / "Mask", prefix="mask_")
        for key in sorted(set(scans) | set(masks)):
            scan, mask = scans.get(key), masks.get(key)
            case = scan.name.removesuffix(".nii.gz") if scan else key
            if case in cases:
                problems[case] = f"two scans named {case}: {cases.pop(case).images[0]} and {scan}"
            elif scan is None or mask is None:
                problems[case] = f"{scan or mask} has no {'mask' if scan else 'scan'} beside it"
            else:
                cases[case] = CaseFiles((scan,), mask)
    return RawDataset("mri_spine_seg", ["T2"], labels, cases, problems)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    own = parser.add_argument_group("MRSpineSeg")
    own.add_argument("--three_classes", action="store_true", help="vertebrae / discs only")
    args = parser.parse_args(argv)
    if not args.raw_dir:
        parser.error("--raw_dir is required: MRSpineSeg is shared on request (see --help)")
    classes = 3 if args.three_classes else 20
    args.output_dir = (
        args.output_dir or f"data/MRSpineSeg/MRI_spine_seg_phase0_class{classes}_big_12"
    )
    labels = THREE_CLASSES if args.three_classes else LABELS
    return driver.run(
        args,
        "mri_spine_seg" if classes == 20 else "mri_spine_seg_class3",
        lambda raw_dir: find_cases(raw_dir, labels),
        config_dir=driver.REPO / "configs" / "mri_spine_seg" / "generated",
        defaults={"label_map": MERGE} if args.three_classes else None,
    )
