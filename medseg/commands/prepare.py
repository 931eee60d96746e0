"""`medseg-prepare <dataset> [flags]`: prepare one dataset medseg knows, or your own folder."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

# Dataset name -> the module whose `main(argv)` prepares it.
DATASETS = {
    "phantom": "medseg.preparation.phantom",
    "folder": "medseg.preparation.folder",
    "nnunet": "medseg.preparation.nnunet",
    "msd": "medseg.preparation.msd",
    "lung_coronavirus": "medseg.preparation.lung_coronavirus",
    "mri_spine_seg": "medseg.preparation.mri_spine_seg",
    "prostate": "medseg.preparation.prostate",
    "luna16": "medseg.preparation.luna16",
}


def overview() -> str:
    """Usage and one line per dataset: its name and the first line of its help."""
    lines = ["usage: medseg-prepare <dataset> [flags]   (medseg-prepare <dataset> --help)", ""]
    for name, module in DATASETS.items():
        doc = importlib.import_module(module).__doc__ or ""
        lines.append(f"  {name:18} {doc.strip().splitlines()[0]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named dataset's preparation; returns its exit status (2: unknown dataset)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(
            f"medseg-prepare: unknown dataset '{name}'{hint} (choose from {', '.join(DATASETS)})",
            file=sys.stderr,
        )
        return 2
    return importlib.import_module(DATASETS[name]).main(rest)
