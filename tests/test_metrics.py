"""Segmentation metrics against known answers: counting, analytic shapes, brute force, two raters.

Known results reproduced:
- Dice/IoU/precision/recall of two boxes by counting voxels.
- Shifting a shape by a vector t gives HD = |t| exactly when a surface voxel lies on the far side
  at the maximal extent (a sphere pole, a slab face): every ∂A voxel a has a + t ∈ ∂B, so no
  directed distance exceeds |t|, and the pole / face voxel cannot be closer than |t|.
- HD of concentric spheres of radii r1 < r2 is r2 − r1 up to voxelisation (within one voxel).
- One outlier voxel sets HD but not HD95 (the robustness HD95 is used for).
- Every result equals a brute-force evaluation of the written definitions on tiny volumes (all
  pairs of surface voxels, surfaces from an explicit neighbour loop), so cropping changes nothing.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.metrics import (
    RULES,
    assd,
    compute_case_metrics,
    dice,
    hausdorff,
    hd95,
    iou,
    nsd,
    precision,
    recall,
    summarize,
    surface_distances,
    surface_mask,
)

DATA = Path(__file__).parent / "data" / "totalseg_small"
ALL_METRICS = ("dice", "iou", "precision", "recall", "hausdorff", "hd95", "assd", "nsd")


def ball(shape, center, radius_mm, spacing):
    """Voxels whose centre lies within `radius_mm` (physical) of `center` (voxel indices)."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, spacing, strict=True))
    return dist2 <= radius_mm**2 + 1e-9


def box(shape, lo, hi):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


# ---------------------------------------------------------------- brute-force reference


def brute_surface(mask):
    """Surface by the written definition: a voxel with a 6-neighbour outside, border outside."""
    out = np.zeros_like(mask)
    for idx in itertools.product(*(range(n) for n in mask.shape)):
        if not mask[idx]:
            continue
        for axis, step in itertools.product(range(3), (-1, 1)):
            nb = list(idx)
            nb[axis] += step
            if not 0 <= nb[axis] < mask.shape[axis] or not mask[tuple(nb)]:
                out[idx] = True
                break
    return out


def brute_metrics(pred, ref, spacing, tolerance):
    pa = np.argwhere(brute_surface(pred)) * np.asarray(spacing)
    pb = np.argwhere(brute_surface(ref)) * np.asarray(spacing)
    pair = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    d_ab, d_ba = pair.min(axis=1), pair.min(axis=0)
    pooled = np.concatenate([d_ab, d_ba])
    return {
        "hausdorff": max(d_ab.max(), d_ba.max()),
        "hd95": max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)),
        "assd": pooled.mean(),
        "nsd": np.mean(pooled <= tolerance),
    }


# ---------------------------------------------------------------- overlap metrics


def test_overlap_metrics_by_counting():
    shape = (8, 6, 6)
    pred = box(shape, (0, 0, 0), (4, 4, 4))  # 64 voxels
    ref = box(shape, (2, 0, 0), (8, 4, 4))  # 96 voxels, 32 shared
    tp, fp, fn = 32, 32, 64
    assert dice(pred, ref) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert iou(pred, ref) == pytest.approx(tp / (tp + fp + fn))
    assert precision(pred, ref) == pytest.approx(0.5)
    assert recall(pred, ref) == pytest.approx(1 / 3)
    assert dice(ref, ref) == 1.0 and iou(ref, ref) == 1.0


def test_overlap_edge_cases():
    empty = np.zeros((4, 4, 4), dtype=bool)
    full = box((4, 4, 4), (1, 1, 1), (3, 3, 3))
    for fn in (dice, iou, precision, recall):
        assert math.isnan(fn(empty, empty))
    # Prediction empty: a complete miss; precision has no predicted voxel to judge.
    assert (dice(empty, full), iou(empty, full), recall(empty, full)) == (0.0, 0.0, 0.0)
    assert math.isnan(precision(empty, full))
    # Reference empty: everything predicted is false positive; recall is undefined.
    assert (dice(full, empty), iou(full, empty), precision(full, empty)) == (0.0, 0.0, 0.0)
    assert math.isnan(recall(full, empty))


def test_bad_inputs_name_the_problem():
    mask = np.zeros((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"same shape.*\(3, 3, 3\).*\(3, 3, 4\)"):
        dice(mask, np.zeros((3, 3, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"boolean.*int64"):
        dice(mask, np.zeros((3, 3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"spacing.*3 positive.*\(1.0, 0.0, 1.0\)"):
        hd95(mask, mask, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        nsd(mask, mask, (1, 1, 1), tolerance=-1.0)


# ---------------------------------------------------------------- surfaces


def test_surface_of_cube_and_single_voxel():
    cube = box((7, 7, 7), (1, 1, 1), (6, 6, 6))
    assert surface_mask(cube).sum() == 5**3 - 3**3
    single = box((3, 3, 3), (1, 1, 1), (2, 2, 2))
    assert np.array_equal(surface_mask(single), single)
    with pytest.raises(ValueError, match=r"boolean.*uint8"):
        surface_mask(single.astype(np.uint8))


def test_image_border_counts_as_outside():
    # A 3-voxel slab filling the whole (y, x) plane: only the 3×3 in-plane interior of the middle
    # layer is not surface. Were the border "inside", the whole middle layer would be interior.
    slab = box((6, 5, 5), (0, 0, 0), (3, 5, 5))
    assert surface_mask(slab).sum() == 75 - 9
    assert surface_mask(np.ones((4, 5, 6), dtype=bool)).sum() == 120 - 2 * 3 * 4


# ---------------------------------------------------------------- analytic distances


@pytest.mark.parametrize("k", [1, 2, 3])
def test_border_touching_slab_shifted_along_z_has_hd_k_times_spacing(k):
    """A slab filling the (y, x) plane, shifted by k slices at 2.5 mm: HD = 2.5·k."""
    shape, spacing = (14, 6, 7), (2.5, 0.8, 0.8)
    pred = box(shape, (2, 0, 0), (8, 6, 7))
    ref = box(shape, (2 + k, 0, 0), (8 + k, 6, 7))
    assert hausdorff(pred, ref, spacing) == pytest.approx(2.5 * k)
    assert hausdorff(ref, pred, spacing) == pytest.approx(2.5 * k)


@pytest.mark.parametrize(("shift", "expected_mm"), [((2, 0, 0), 5.0), ((0, 3, 0), 2.4)])
def test_shifted_sphere_anisotropic_hd_equals_shift(shift, expected_mm):
    """Ball of radius 20 mm at spacing (2.5, 0.8, 0.8): poles lie exactly on the sphere."""
    spacing, shape = (2.5, 0.8, 0.8), (22, 58, 54)
    center = (10, 27, 27)
    pred = ball(shape, center, 20.0, spacing)
    ref = ball(shape, tuple(c + s for c, s in zip(center, shift, strict=True)), 20.0, spacing)
    assert hausdorff(pred, ref, spacing) == pytest.approx(expected_mm, abs=1e-9)
    assert hd95(pred, ref, spacing) <= expected_mm + 1e-9


def test_concentric_spheres_hd_is_radius_difference():
    """HD of concentric spheres of radii r1 < r2 equals r2 − r1 up to voxelisation (1 voxel)."""
    shape, spacing, center = (41, 41, 41), (1.0, 1.0, 1.0), (20, 20, 20)
    inner, outer = ball(shape, center, 8.0, spacing), ball(shape, center, 15.0, spacing)
    distances = surface_distances(inner, outer, spacing)
    assert abs(distances.hausdorff() - 7.0) < 1.0
    # Every inner surface voxel is about 7 mm from the outer surface, so ASSD is close too.
    assert abs(distances.assd() - 7.0) < 1.0
    assert nsd(inner, outer, spacing, tolerance=5.0) == 0.0
    assert nsd(inner, outer, spacing, tolerance=9.0) == 1.0


def test_single_voxels():
    shape, spacing = (5, 5, 5), (2.0, 1.0, 1.0)
    pred, ref = box(shape, (1, 1, 1), (2, 2, 2)), box(shape, (2, 3, 3), (3, 4, 4))
    expected = math.sqrt(2.0**2 + 2.0**2 + 2.0**2)
    assert hausdorff(pred, ref, spacing) == pytest.approx(expected)
    assert hd95(pred, ref, spacing) == pytest.approx(expected)
    assert assd(pred, ref, spacing) == pytest.approx(expected)
    assert nsd(pred, ref, spacing, tolerance=3.4) == 0.0
    assert nsd(pred, ref, spacing, tolerance=3.5) == 1.0
    assert hausdorff(pred, pred, spacing) == 0.0


def test_outlier_voxel_sets_hd_but_not_hd95():
    shape, spacing = (12, 12, 30), (1.0, 1.0, 1.0)
    ref = box(shape, (1, 1, 1), (6, 6, 6))  # 98 surface voxels
    pred = ref.copy()
    pred[3, 3, 25] = True  # lone voxel 20 mm beyond the cube's face at x = 5
    d = surface_distances(pred, ref, spacing)
    assert d.hausdorff() == pytest.approx(20.0)
    assert d.percentile(95) == 0.0 < d.hausdorff()
    assert d.assd() == pytest.approx(20.0 / (99 + 98))
    assert d.nsd(1.0) == pytest.approx(196 / 197)


def test_distance_edge_cases():
    spacing = (1.0, 1.0, 1.0)
    empty = np.zeros((5, 5, 5), dtype=bool)
    blob = box((5, 5, 5), (1, 1, 1), (3, 3, 3))
    for fn in (hausdorff, hd95, assd):
        assert math.isnan(fn(empty, empty, spacing))
        assert fn(empty, blob, spacing) == math.inf
        assert fn(blob, empty, spacing) == math.inf
    assert math.isnan(nsd(empty, empty, spacing, tolerance=1.0))
    assert nsd(blob, empty, spacing, tolerance=1.0) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_tiny_volumes(seed):
    """Random blobs touching the border and each other; cropping must not change anything."""
    rng = np.random.default_rng(seed)
    shape = (6, 7, 8)
    spacing = tuple(rng.uniform(0.5, 3.0, size=3))
    pred = np.zeros(shape, dtype=bool)
    ref = np.zeros(shape, dtype=bool)
    pred[1:5, 0:5, 2:8] = rng.random((4, 5, 6)) < 0.7  # touches y = 0 and x = 7 borders
    ref[0:4, 2:7, 0:6] = rng.random((4, 5, 6)) < 0.7
    tolerance = float(rng.uniform(0.5, 3.0))
    expected = brute_metrics(pred, ref, spacing, tolerance)
    assert np.array_equal(surface_mask(pred), brute_surface(pred))
    d = surface_distances(pred, ref, spacing)
    got = {"hausdorff": d.hausdorff(), "hd95": d.percentile(95), "assd": d.assd()}
    got["nsd"] = d.nsd(tolerance)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


# ---------------------------------------------------------------- per case, two raters


def test_case_rows_equal_per_class_functions():
    shape, spacing = (10, 12, 14), (2.0, 1.0, 0.5)
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 4, size=shape).astype(np.uint8)
    ref = np.where(rng.random(shape) < 0.8, pred, rng.integers(0, 4, size=shape)).astype(np.int16)
    pred[pred == 3] = 0  # class 3 only in the reference
    rows = compute_case_metrics(pred, ref, spacing, [1, 2, 3, 7], ALL_METRICS, nsd_tolerance=1.5)
    assert [r["class_id"] for r in rows] == [1, 2, 3, 7]
    for row in rows[:2]:
        p, r = pred == row["class_id"], ref == row["class_id"]
        assert row["dice"] == dice(p, r) and row["recall"] == recall(p, r)
        assert row["hd95"] == hd95(p, r, spacing) and row["assd"] == assd(p, r, spacing)
        assert row["nsd"] == nsd(p, r, spacing, 1.5)
    assert rows[2]["dice"] == 0.0 and rows[2]["hd95"] == math.inf and rows[2]["nsd"] == 0.0
    assert all(math.isnan(rows[3][m]) for m in ALL_METRICS)  # class 7 in neither map


def test_case_metrics_rejects_bad_requests():
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="background"):
        compute_case_metrics(labels, labels, (1, 1, 1), [0, 1])
    with pytest.raises(ValueError, match=r"unknown metric.*'hd99'"):
        compute_case_metrics(labels, labels, (1, 1, 1), [1], metrics=("hd99",))
    with pytest.raises(ValueError, match="nsd_tolerance"):
        compute_case_metrics(labels, labels, (1, 1, 1), [1], metrics=("nsd",))
    with pytest.raises(ValueError, match=r"integer label map.*float32"):
        compute_case_metrics(labels.astype(np.float32), labels, (1, 1, 1), [1])


def read_labels(name):
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.ReadImage(str(DATA / name))
    return sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing()))


def test_two_raters_on_real_label_maps():
    """TotalSegmentator 'total' vs 'total --fast' on one CT: large organs agree well."""
    full, spacing = read_labels("example_seg.nii.gz")
    fast, spacing_fast = read_labels("example_seg_fast.nii.gz")
    assert spacing == spacing_fast == (3.0, 3.0, 3.0)
    labels = json.loads((DATA / "labels.json").read_text())["example_seg.nii.gz"]["labels"]
    assert labels["1"]["name"] == "spleen" and labels["5"]["name"] == "liver"
    rows = compute_case_metrics(fast, full, spacing, [1, 5], ALL_METRICS, nsd_tolerance=3.0)
    for row in rows:
        assert 0.5 < row["dice"] <= 1.0
        assert 0.0 <= row["hd95"] <= row["hausdorff"] < math.inf
        assert 0.0 < row["assd"] <= row["hd95"] + 3.0 and 0.9 < row["nsd"] <= 1.0
    # Label 13 (lung_middle_lobe_right) is only in the reference ('total') map: a complete miss.
    (row13,) = compute_case_metrics(fast, full, spacing, [13], ALL_METRICS, nsd_tolerance=3.0)
    assert row13["dice"] == row13["recall"] == row13["nsd"] == 0.0
    assert row13["hausdorff"] == math.inf and math.isnan(row13["precision"])


# ---------------------------------------------------------------- summary


def test_summarize_with_nan_and_inf():
    nan, inf = math.nan, math.inf
    rows = [
        {"case": "a", "class_id": 1, "class_name": "liver", "dice": 0.8, "hd95": 2.0},
        {"case": "b", "class_id": 1, "dice": nan, "hd95": nan},
        {"case": "c", "class_id": 1, "dice": 0.6, "hd95": inf},
        {"case": "a", "class_id": 2, "dice": 0.4, "hd95": 4.0},
        {"case": "b", "class_id": 2, "dice": 0.2, "hd95": 6.0},
        {"case": "a", "class_id": 3, "dice": nan, "hd95": nan},
    ]
    out = summarize(rows, {1: "liver", 2: "spleen", 3: "pancreas"})
    assert out["rules"] == RULES and "Background" in RULES
    liver, spleen, pancreas = (out["per_class"][n] for n in ("liver", "spleen", "pancreas"))
    assert liver["class_id"] == 1
    assert liver["dice"]["mean"] == pytest.approx(0.7) and liver["dice"]["count"] == 2
    assert liver["dice"]["std"] == pytest.approx(0.1) and liver["dice"]["median"] == 0.7
    assert liver["hd95"]["mean"] == inf and liver["hd95"]["std"] == inf
    assert liver["hd95"]["finite_mean"] == 2.0 and liver["hd95"]["inf_count"] == 1
    assert spleen["hd95"]["median"] == 5.0 and spleen["hd95"]["inf_count"] == 0
    assert pancreas["dice"]["count"] == 0 and math.isnan(pancreas["dice"]["mean"])
    # Mean over foreground classes of per-class means; an all-NaN class is left out.
    assert out["foreground_mean"]["dice"] == pytest.approx((0.7 + 0.3) / 2)
    assert out["foreground_mean"]["hd95"] == inf
    assert out["foreground_finite_mean"]["hd95"] == pytest.approx((2.0 + 5.0) / 2)
    with pytest.raises(ValueError, match="background 0"):
        summarize(rows, {0: "background", 1: "liver"})
    with pytest.raises(ValueError, match=r"class ids \[3\]"):
        summarize(rows, {1: "liver", 2: "spleen"})


# ---------------------------------------------------------------- MONAI cross-check


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecation notices
def test_same_values_as_monai():
    """Same definitions as MONAI (requirements-dev.txt installs it, so CI always checks).

    Matched: `monai.metrics.compute_hausdorff_distance(y_pred, y, include_background=True,
    percentile=95)` (and `percentile=None` for HD), `compute_average_surface_distance(...,
    symmetric=True)` for ASSD and `compute_surface_dice(..., class_thresholds=[tau],
    use_subvoxels=False)` for NSD, all with `spacing=(z, y, x)`, default euclidean distance,
    inputs shaped (1, 1, Z, Y, X). MONAI works in float32, hence the 1e-6 relative tolerance.
    """
    import monai.metrics as monai_metrics
    import torch

    spacing = (2.5, 0.8, 0.8)
    rng = np.random.default_rng(0)
    shape = (22, 58, 54)
    cases = [
        (ball(shape, (10, 27, 27), 20.0, spacing), ball(shape, (12, 29, 26), 18.0, spacing)),
        (box((14, 6, 7), (2, 0, 0), (8, 6, 7)), box((14, 6, 7), (4, 0, 0), (10, 6, 7))),
        (rng.random((8, 9, 10)) < 0.5, rng.random((8, 9, 10)) < 0.5),
    ]
    for pred, ref in cases:
        y_pred, y = (torch.from_numpy(m)[None, None].float() for m in (pred, ref))
        common = {"include_background": True, "spacing": spacing}
        ours = surface_distances(pred, ref, spacing)
        theirs = {
            "hd95": monai_metrics.compute_hausdorff_distance(y_pred, y, percentile=95, **common),
            "hd": monai_metrics.compute_hausdorff_distance(y_pred, y, **common),
            "assd": monai_metrics.compute_average_surface_distance(
                y_pred, y, symmetric=True, **common
            ),
            "nsd": monai_metrics.compute_surface_dice(y_pred, y, [3.0], **common),
        }
        mine = {"hd95": ours.percentile(95), "hd": ours.hausdorff(), "assd": ours.assd()}
        mine["nsd"] = ours.nsd(3.0)
        for name, value in mine.items():
            assert value == pytest.approx(float(theirs[name].item()), rel=1e-6), name
