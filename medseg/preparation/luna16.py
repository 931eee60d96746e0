"""Prepare LUNA16 chest CT scans with their lung masks (left lung, right lung, trachea).

Where to get the data: https://luna16.grand-challenge.org/ (888 CT scans from LIDC-IDRI;
CC BY 4.0; cite Setio et al., Medical Image Analysis 42, 2017, and LIDC-IDRI). The files are on
Zenodo: subset0-6 and seg-lungs-LUNA16 in record 3723295, subset7-9 in record 4121926. Without
--raw_dir the chosen subsets (--subsets, default all: about 120 GB) and the masks are downloaded
from there, resumably and checked against the MD5 that Zenodo publishes, and extracted into
--download_dir (default data/downloads/luna16).

Expected layout (--raw_dir, searched recursively):
  subset0/<seriesuid>.mhd + .raw ... subset9/...
  seg-lungs-LUNA16/<seriesuid>.mhd + .zraw
Masks hold 3 (left lung), 4 (right lung) and 5 (trachea), remapped to the ids 1, 2 and 3.
Masks of scans in other subsets are ignored; a scan without a mask is reported.

Recipe defaults: 2 mm isotropic voxels (a whole chest fits in memory, the trachea stays a few
voxels wide) and the CT window [-1250, 250]. Output: data/luna16, the folder
configs/luna16/*.yml read; generated configs with the planned patch go to
configs/luna16/generated/.

Example:
  medseg-prepare luna16 --subsets 0 1
  python train.py --config configs/luna16/vnet_luna16_96_160_160_15k.yml --do_eval
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.preparation import driver
from medseg.preprocessing.archive import is_junk
from medseg.preprocessing.cases import CaseFiles, RawDataset
from medseg.preprocessing.zenodo import record_files

RECORDS = {"3723295": range(0, 7), "4121926": range(7, 10)}  # Zenodo record -> its subsets
MASKS = "seg-lungs-LUNA16"
SUBSET = re.compile(r"^subset(\d+)$", re.IGNORECASE)
LABELS = {0: "background", 1: "left_lung", 2: "right_lung", 3: "trachea"}
DEFAULTS = {
    "target_spacing": [2.0, 2.0, 2.0],
    "ct_window": [-1250.0, 250.0],
    "label_map": {3: 1, 4: 2, 5: 3},
}


def _subset(path: Path, raw_dir: Path) -> int | None:
    for part in path.relative_to(raw_dir).parts[:-1]:
        match = SUBSET.match(part)
        if match:
            return int(match[1])
    return None


def find_cases(raw_dir: Path, subsets: list[int]) -> RawDataset:
    """Pair subset<k>/<uid>.mhd (k in `subsets`) with seg-lungs-LUNA16/<uid>.mhd."""
    scans, masks = {}, {}
    for path in sorted(raw_dir.rglob("*.mhd")):
        if is_junk(path.name):
            continue
        uid = path.name.removesuffix(".mhd")
        if MASKS.lower() in {p.lower() for p in path.relative_to(raw_dir).parts[:-1]}:
            masks[uid] = path
        elif _subset(path, raw_dir) in subsets:
            scans[uid] = path
    if not scans:
        raise FileNotFoundError(f"no subset{subsets}/*.mhd scans under {raw_dir}")
    cases, problems = {}, {}
    for uid, scan in scans.items():
        if uid in masks:
            cases[uid] = CaseFiles((scan,), masks[uid])
        else:
            problems[uid] = f"{scan} has no mask {MASKS}/{uid}.mhd"
    return RawDataset("luna16", ["CT"], LABELS, cases, problems)


def sources(subsets: list[int]) -> list[driver.Source]:
    """The Zenodo archives of `subsets` and of the masks, with their published MD5s."""
    wanted = []
    for record, held in RECORDS.items():
        names = [f"subset{k}.zip" for k in subsets if k in held]
        if record == "3723295":
            names.append(f"{MASKS}.zip")
        if names:
            wanted += [
                driver.Source(url, md5=md5) for url, md5 in record_files(record, names).values()
            ]
    return wanted


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    own = parser.add_argument_group("LUNA16")
    own.add_argument(
        "--subsets",
        nargs="+",
        type=int,
        choices=range(10),
        default=list(range(10)),
        metavar="K",
        help="the subset<K> folders to prepare (and download); default all ten",
    )
    args = parser.parse_args(argv)
    args.download_dir = args.download_dir or "data/downloads/luna16"
    return driver.run(
        args,
        "luna16",
        lambda raw_dir: find_cases(raw_dir, args.subsets),
        sources=lambda: sources(args.subsets),
        config_dir=driver.REPO / "configs" / "luna16" / "generated",
        defaults=DEFAULTS,
    )
