"""Prepare the COVID-19 CT Lung and Infection Segmentation dataset (20 chest CT scans).

Where to get the data: Zenodo record 3757476 (Ma et al., doi:10.5281/zenodo.3757476; use it
under the license shown on the record and cite the dataset). Without --raw_dir the scans archive
and the chosen masks archive are downloaded from https://zenodo.org/records/3757476, resumably
and checked against the MD5 that Zenodo publishes, and each archive is extracted into a folder
named after it in --download_dir (default data/downloads/lung_coronavirus).

Expected layout (--raw_dir; MedicalSeg's folder names 20_ncov_scan, lung_mask, infection_mask
and lung_infection work too):
  COVID-19-CT-Seg_20cases/coronacases_org_001.nii.gz ...
                          radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm.nii.gz ...
  Lung_Mask/coronacases_001.nii.gz, radiopaedia_4_85506_1.nii.gz ...  1 left, 2 right lung
  Infection_Mask/<same names>                                          1 infection
  Lung_and_Infection_Mask/<same names>                   1 left, 2 right lung, 3 infection
--masks picks the label set: lung (default; MedicalSeg's 3 classes), infection, or
lung_and_infection.

Intensities: the 10 Radiopaedia scans were published windowed to [-1250, 250] HU and rescaled
to [0, 255]. Those still in that range are mapped back to HU (int16 copies under
<output_dir>/hu_scans/, which dataset.json then names as the sources) so that all 20 scans share
one scale; --keep_intensities skips this. Recipe defaults: CT window [-1250, 250] and 2.5 mm
isotropic voxels (a chest then spans about 128^3 voxels, the size MedicalSeg resized to).

Output: data/lung_coronavirus/<name>_phase0 (the folder configs/lung_coronavirus/*.yml read for
--masks lung); generated configs with the planned patch go to configs/lung_coronavirus/generated/.

Example:
  medseg-prepare lung_coronavirus
  python train.py --config configs/lung_coronavirus/vnet_lung_coronavirus_128_128_128_15k.yml
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medseg.preparation import driver
from medseg.preprocessing.archive import is_junk
from medseg.preprocessing.cases import CaseFiles, RawDataset
from medseg.preprocessing.io import read_volume, write_volume
from medseg.preprocessing.zenodo import record_files

logger = logging.getLogger("prepare")

RECORD = "3757476"
SCANS = ("COVID-19-CT-Seg_20cases", "20_ncov_scan")  # archive folder, MedicalSeg's folder
# --masks -> (archive folder, MedicalSeg's folder), class names by id
MASKS = {
    "lung": (("Lung_Mask", "lung_mask"), {0: "background", 1: "left_lung", 2: "right_lung"}),
    "infection": (("Infection_Mask", "infection_mask"), {0: "background", 1: "infection"}),
    "lung_and_infection": (
        ("Lung_and_Infection_Mask", "lung_infection"),
        {0: "background", 1: "left_lung", 2: "right_lung", 3: "infection"},
    ),
}
WINDOW = (-1250.0, 250.0)  # the lung window the Radiopaedia scans were published in
DEFAULTS = {"ct_window": list(WINDOW), "target_spacing": [2.5, 2.5, 2.5]}


def case_id(scan_name: str) -> str:
    """The case id (the mask's name) of a scan file.

    coronacases_org_001 -> coronacases_001;
    radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm -> radiopaedia_4_85506_1.
    """
    stem = scan_name.removesuffix(".nii.gz")
    return stem.replace("_org_covid-19-pneumonia-", "_").replace("-dcm", "").replace("_org_", "_")


def _files_in(raw_dir: Path, folders: tuple[str, ...]) -> list[Path]:
    names = {f.lower() for f in folders}
    return [
        p
        for p in sorted(raw_dir.rglob("*.nii.gz"))
        if not is_junk(p.name) and names & {part.lower() for part in p.relative_to(raw_dir).parts}
    ]


def to_hu(scan: Path, hu_dir: Path) -> Path:
    """An HU copy of a scan published in [0, 255] (the scan itself when it is not)."""
    target = hu_dir / scan.name
    if target.is_file():
        return target
    image, geometry = read_volume(scan)
    if image.min() < 0 or image.max() > 255:
        return scan
    hu = np.rint(image.astype(np.float32) / 255.0 * (WINDOW[1] - WINDOW[0]) + WINDOW[0])
    write_volume(hu.astype(np.int16), geometry, target)
    logger.info("%s: [0, 255] mapped back to HU %s -> %s", scan.name, list(WINDOW), target)
    return target


def find_cases(raw_dir: Path, masks: str, hu_dir: Path | None) -> RawDataset:
    """Pair each scan with its mask by case id (see the module docstring)."""
    folders, labels = MASKS[masks]
    scans = {case_id(p.name): p for p in _files_in(raw_dir, SCANS)}
    masks_found = {p.name.removesuffix(".nii.gz"): p for p in _files_in(raw_dir, folders)}
    if not scans:
        raise FileNotFoundError(f"no scans in a folder named {' or '.join(SCANS)} under {raw_dir}")
    cases, problems = {}, {}
    for case in sorted(set(scans) | set(masks_found)):
        if case not in masks_found:
            problems[case] = f"scan {scans[case]} has no mask in {' or '.join(folders)}"
        elif case not in scans:
            problems[case] = f"mask {masks_found[case]} has no scan"
        else:
            scan = scans[case]
            if hu_dir is not None and case.startswith("radiopaedia"):
                try:
                    scan = to_hu(scan, hu_dir)
                except (ValueError, OSError) as err:
                    problems[case] = str(err)
                    continue
            cases[case] = CaseFiles((scan,), masks_found[case])
    return RawDataset("lung_coronavirus", ["CT"], labels, cases, problems)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    own = parser.add_argument_group("COVID-19 CT")
    own.add_argument("--masks", choices=sorted(MASKS), default="lung", help="label set")
    own.add_argument("--keep_intensities", action="store_true", help="no [0, 255] -> HU")
    args = parser.parse_args(argv)
    name = "lung_coronavirus" if args.masks == "lung" else f"lung_coronavirus_{args.masks}"
    args.output_dir = args.output_dir or f"data/lung_coronavirus/{args.name or name}_phase0"
    args.download_dir = args.download_dir or "data/downloads/lung_coronavirus"
    hu_dir = None if args.keep_intensities else Path(args.output_dir) / "hu_scans"

    def sources() -> list[driver.Source]:
        archives = [f"{SCANS[0]}.zip", f"{MASKS[args.masks][0][0]}.zip"]
        found = record_files(RECORD, archives)
        return [
            driver.Source(url, md5=md5, folder=archive.removesuffix(".zip"))
            for archive, (url, md5) in found.items()
        ]

    return driver.run(
        args,
        name,
        lambda raw_dir: find_cases(raw_dir, args.masks, hu_dir),
        sources=sources,
        config_dir=driver.REPO / "configs" / "lung_coronavirus" / "generated",
        defaults=DEFAULTS,
    )
