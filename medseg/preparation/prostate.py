"""Prepare PROMISE12: transversal T2 MR scans of the prostate with prostate masks (.mhd).

Where to get the data: https://promise12.grand-challenge.org/ (MICCAI 2012 prostate challenge;
register on grand-challenge.org, accept the challenge's data terms and download the training
archives TrainingData_Part1.zip, TrainingData_Part2.zip and TrainingData_Part3.zip; cite Litjens
et al., Medical Image Analysis 18(2), 2014). The download needs a login, so it is not automatic:
pass --raw_dir.

Expected layout (--raw_dir is the folder holding the extracted parts, searched recursively):
  TrainingData_Part1/Case00.mhd + Case00.raw, Case00_segmentation.mhd + .raw ...
  TrainingData_Part2/...  TrainingData_Part3/...   (50 cases, Case00 to Case49)
Scans are paired with <case>_segmentation.mhd in the same folder; folders without any
segmentation (the challenge's TestData, whose names repeat the training names) are skipped.
Labels: 0 background, 1 prostate.

Recipe defaults: the planned ("auto") spacing, which keeps the thick transversal slices, and a
z-score of each scan. Output: data/prostate, the folder configs/prostate/*.yml read; generated
configs with the planned patch go to configs/prostate/generated/.

Example:
  medseg-prepare prostate --raw_dir ~/Downloads/promise12
  python train.py --config configs/prostate/vnet_prostate_32_192_192_15k.yml --do_eval
"""

from __future__ import annotations

from pathlib import Path

from medseg.preparation import driver
from medseg.preprocessing.archive import is_junk
from medseg.preprocessing.cases import CaseFiles, RawDataset

SEGMENTATION = "_segmentation.mhd"


def find_cases(raw_dir: Path) -> RawDataset:
    """Pair <case>.mhd with <case>_segmentation.mhd in every folder holding segmentations."""
    folders = sorted({p.parent for p in raw_dir.rglob(f"*{SEGMENTATION}") if not is_junk(p.name)})
    if not folders:
        raise FileNotFoundError(f"no *{SEGMENTATION} files under {raw_dir} (PROMISE12 training)")
    cases: dict[str, CaseFiles] = {}
    problems: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.mhd")):
            if is_junk(path.name) or path.name.endswith(SEGMENTATION):
                continue
            case = path.name.removesuffix(".mhd")
            label = folder / f"{case}{SEGMENTATION}"
            if case in cases:
                problems[case] = f"two scans named {case}: {cases.pop(case).images[0]} and {path}"
            elif not label.is_file():
                problems[case] = f"{path} has no {label.name} beside it"
            else:
                cases[case] = CaseFiles((path,), label)
        for label in sorted(folder.glob(f"*{SEGMENTATION}")):
            case = label.name.removesuffix(SEGMENTATION)
            if not (folder / f"{case}.mhd").is_file():
                problems[case] = f"{label} has no scan {case}.mhd beside it"
    return RawDataset("prostate", ["T2"], {0: "background", 1: "prostate"}, cases, problems)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    args = parser.parse_args(argv)
    if not args.raw_dir:
        parser.error("--raw_dir is required: PROMISE12 needs a grand-challenge login (see --help)")
    return driver.run(
        args, "prostate", find_cases, config_dir=driver.REPO / "configs" / "prostate" / "generated"
    )
