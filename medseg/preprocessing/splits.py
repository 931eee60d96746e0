"""Deterministic train/val/test splits from case ids and a seed.

Cases are ordered by the SHA-256 of `"<seed>:<case id>"`, which depends on nothing but the ids
and the seed: the same inputs give the same split on any machine, Python or NumPy version, and
in any input order. Each case lands in exactly one split.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable


def fold_list_name(fold: int, split: str) -> str:
    """A fold's list file, relative to the dataset folder: `folds/fold_<k>_<split>_list.txt`."""
    return f"folds/fold_{fold}_{split}_list.txt"


def _seeded_order(ids: list[str], seed: int) -> list[str]:
    return sorted(ids, key=lambda c: (hashlib.sha256(f"{seed}:{c}".encode()).hexdigest(), c))


def _count(fraction: float, total: int, name: str) -> int:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    count = round(total * fraction)
    return max(count, 1) if fraction > 0 and total > 1 else count


def split_cases(
    case_ids: Iterable[str], val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, list[str]]:
    """Split case ids into sorted, disjoint `train`, `val` and `test` lists.

    A non-zero fraction gets at least one case when there are two or more cases; train always
    keeps at least one.
    """
    ids = list(case_ids)
    duplicates = sorted(c for c, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"case ids must be unique, duplicated: {duplicates}")
    if not ids:
        raise ValueError("cannot split an empty list of cases")
    order = _seeded_order(ids, seed)
    n_val = _count(val_fraction, len(ids), "val_fraction")
    n_test = _count(test_fraction, len(ids), "test_fraction")
    if n_val + n_test >= len(ids):
        raise ValueError(
            f"{len(ids)} case(s) cannot give {n_val} val and {n_test} test case(s) and keep one "
            f"for training (val_fraction={val_fraction}, test_fraction={test_fraction})"
        )
    return {
        "train": sorted(order[n_val + n_test :]),
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val : n_val + n_test]),
    }


def kfold_cases(case_ids: Iterable[str], folds: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """K disjoint validation folds covering every case, each with the rest as its train list.

    Cases are dealt round-robin in the same seeded hash order as `split_cases`, so fold sizes
    differ by at most one and the result depends only on the ids and the seed.
    """
    ids = sorted(set(case_ids))
    if not isinstance(folds, int) or folds < 2 or folds > len(ids):
        raise ValueError(
            f"folds must be an integer in [2, {len(ids)}] (the case count), got {folds}"
        )
    order = _seeded_order(ids, seed)
    val = [sorted(order[k::folds]) for k in range(folds)]
    return [{"train": sorted(set(ids) - set(v)), "val": v} for v in val]
