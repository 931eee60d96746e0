"""Generate the synthetic CT phantom dataset and preprocess it: medseg's demo and test data.

Each case is a CT-like volume: a body (elliptic cylinder, soft tissue) in air, a bright spine and
three organ classes (liver: large ellipsoid on the patient's right; spleen: flat rotated
ellipsoid on the left; kidney: bean shape, posterior), with per-case random size, position and
intensity, partial-volume blur and Gaussian noise. The anatomy is defined in physical (LPS)
space and sampled on per-case grids with anisotropic spacing, non-zero origins and different
stored orientations (LPS, RAS-style flips, permuted axes, and one slightly oblique case), so
that the preprocessing has real geometry to undo.

Writes `<output_dir>/raw/` (nnU-Net v2 raw layout, int16 NIfTI images, uint8 labels) and then
prepares it with the driver every dataset uses into `<output_dir>/preprocessed/` (medseg layout,
80/20 train/val split; the log is `preprocessed/prepare.log`). The preprocessing is fixed (LPS,
crop above -500 HU with a 2-voxel margin, 2.5 x 1.6 x 1.6 mm, CT window [-200, 300]); the
preprocessing flags below override it. The configs in configs/phantom/ read this folder, so
none is generated. A finished run leaves `<output_dir>/phantom.json`; a rerun with the same
arguments does nothing.

Usage:
    medseg-prepare phantom --num_cases 20 --seed 0 --output_dir data/phantom
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import scipy.ndimage

from medseg.preparation import driver
from medseg.preprocessing.description import load_description
from medseg.preprocessing.formats.nnunet import read_nnunet_raw, write_nnunet_description
from medseg.preprocessing.io import Geometry, write_volume
from medseg.preprocessing.options import PrepareOptions
from medseg.preprocessing.recipe import Recipe
from medseg.utils.atomic import write_text_atomic
from medseg.utils.logging import setup_logging

logger = logging.getLogger("prepare_phantom")

GENERATOR_VERSION = 1
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
FIELD_OF_VIEW_MM = (128.0, 128.0, 120.0)  # physical x, y, z
DEFAULT_SIZE = (160, 160, 48)  # voxels along physical x, y, z: about 0.8 × 0.8 × 2.5 mm
MIN_VISIBLE = 0.75  # share of each organ that must stay visible where organs touch
OPTIONS = {  # the preprocessing options (keys of medseg.preprocessing.options), nothing planned
    "orientation": "LPS",
    "crop": {"threshold": -500.0, "margin": 2},
    "target_spacing": [2.5, 1.6, 1.6],
    "image_order": 1,
    "label_interpolation": "nearest",
    "normalization": "ct",
    "ct_window": [-200.0, 300.0],
    "patch_size": [32, 48, 48],  # what configs/phantom/ trains with
}


def recipe() -> Recipe:
    """The phantom's preprocessing recipe: what `OPTIONS` resolve to (nothing is planned)."""
    return PrepareOptions.from_dict(OPTIONS).resolve(["CT"], None)[0]


def _rotation(axis: int, degrees: float) -> np.ndarray:
    """Rotation matrix about physical axis `axis` (0 = x, 1 = y, 2 = z)."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def case_geometry(index: int, size: tuple[int, int, int], rng: np.random.Generator) -> Geometry:
    """A grid covering the field of view around a random centre, stored in one of four ways.

    Case 2 is slightly oblique; the others cycle through LPS, RAS-style (x and y flipped) and
    permuted storage (array axes along physical z, x, y).
    """
    in_plane = rng.uniform(0.95, 1.05)
    spacing_xyz = np.array(FIELD_OF_VIEW_MM) / np.array(size) * [in_plane, in_plane, 1.0]
    spacing_xyz[2] *= rng.uniform(0.95, 1.05)
    # ITK-style: column k of `itk_direction` is the physical direction of index axis k.
    kind = "oblique" if index == 2 else ("lps", "ras", "permuted")[index % 3]
    order = [0, 1, 2]
    if kind == "ras":
        itk_direction = np.diag([-1.0, -1.0, 1.0])
    elif kind == "permuted":
        order = [2, 0, 1]
        itk_direction = np.eye(3)[:, order] * [1.0, -1.0, 1.0]
    elif kind == "oblique":
        itk_direction = _rotation(2, rng.uniform(4.0, 8.0)) @ _rotation(0, rng.uniform(2.0, 4.0))
    else:
        itk_direction = np.eye(3)
    itk_size = np.array(size)[order]
    itk_spacing = spacing_xyz[order]
    centre = np.array([rng.uniform(-30, 30), rng.uniform(-220, -160), rng.uniform(-650, -450)])
    geometry = Geometry(
        shape=tuple(itk_size[::-1]),
        spacing=tuple(itk_spacing[::-1]),
        origin=(0.0, 0.0, 0.0),
        direction=itk_direction[:, ::-1],
    )
    middle = (np.array(geometry.shape) - 1) / 2.0
    return geometry.replace(origin=tuple(centre - (geometry.physical_point(middle))))


def _ellipsoid(points: np.ndarray, centre, semi_axes, rotation: np.ndarray) -> np.ndarray:
    """Mask of points (3, ...) inside a rotated ellipsoid."""
    local = np.tensordot(
        rotation.T, points - np.reshape(centre, (3,) + (1,) * (points.ndim - 1)), 1
    )
    scaled = local / np.reshape(semi_axes, (3,) + (1,) * (points.ndim - 1))
    return np.sum(scaled * scaled, axis=0) <= 1.0


def _organs(points: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Masks of liver, spleen and kidney (in that order) for body-centred LPS points (mm)."""
    u = rng.uniform
    liver = _ellipsoid(
        points,
        (u(-32, -22), u(-8, 4), u(-12, 12)),
        (u(20, 28), u(18, 26), u(30, 40)),
        _rotation(2, u(-20, 20)),
    )
    spleen = _ellipsoid(
        points,
        (u(28, 36), u(-6, 6), u(-8, 16)),
        (u(12, 16), u(20, 26), u(20, 28)),
        _rotation(2, u(20, 40)),
    )
    kidney_centre = np.array([u(16, 24), u(20, 26), u(-18, 0)])
    kidney_axes = np.array([u(12, 15), u(13, 16), u(18, 24)])
    kidney_rotation = _rotation(2, u(-15, 15))
    kidney = _ellipsoid(points, kidney_centre, kidney_axes, kidney_rotation)
    hilum_centre = kidney_centre + kidney_rotation @ [-0.85 * kidney_axes[0], 0.0, 0.0]
    kidney &= ~_ellipsoid(points, hilum_centre, kidney_axes * [0.5, 0.35, 0.45], kidney_rotation)
    return [liver, spleen, kidney]


def make_case(
    index: int, seed: int, size: tuple[int, int, int] = DEFAULT_SIZE
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One phantom case: int16 HU image, uint8 label map (both (Z, Y, X)) and their geometry."""
    rng = np.random.default_rng([seed, index])
    geometry = case_geometry(index, size, rng)
    centre = geometry.physical_point((np.array(geometry.shape) - 1) / 2.0)
    axes = [
        np.arange(n, dtype=np.float32) * s
        for n, s in zip(geometry.shape, geometry.spacing, strict=True)
    ]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"))  # (3, Z, Y, X) offsets in mm per array axis
    points = np.tensordot(geometry.matrix.astype(np.float32), grid, 1)
    points += (np.asarray(geometry.origin) - centre).astype(np.float32).reshape(3, 1, 1, 1)

    x, y = points[0], points[1]
    half_x, half_y = rng.uniform(55, 62), rng.uniform(44, 50)
    body = (x / half_x) ** 2 + (y / half_y) ** 2 <= 1.0
    spine = (x**2 + (y - (half_y - 15)) ** 2 <= rng.uniform(9, 11) ** 2) & body
    for _ in range(100):
        organs = [mask & body for mask in _organs(points, rng)]
        label = np.zeros(geometry.shape, dtype=np.uint8)
        for value, mask in enumerate(organs, start=1):
            label[mask] = value
        visible = [
            np.count_nonzero(label == v) / max(np.count_nonzero(m), 1)
            for v, m in enumerate(organs, start=1)
        ]
        if min(visible) >= MIN_VISIBLE:
            break
    else:
        raise RuntimeError(f"case {index}: could not place the organs without hiding one")

    hu = np.full(geometry.shape, -1000.0, dtype=np.float32)
    hu[body] = rng.uniform(5, 35)
    hu[spine] = rng.uniform(500, 700)
    for value, (low, high) in enumerate([(95, 115), (150, 170), (210, 240)], start=1):
        hu[label == value] = rng.uniform(low, high)
    hu = scipy.ndimage.gaussian_filter(hu, sigma=[1.0 / s for s in geometry.spacing])
    hu += rng.normal(0.0, rng.uniform(15, 25), size=hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), label, geometry


def write_raw(raw_dir: Path, num_cases: int, seed: int, size: tuple[int, int, int]) -> None:
    """Write `num_cases` phantom cases in nnU-Net v2 raw layout."""
    for index in range(num_cases):
        image, label, geometry = make_case(index, seed, size)
        case = f"phantom_{index:03d}"
        write_volume(image, geometry, raw_dir / "imagesTr" / f"{case}_0000.nii.gz")
        write_volume(label, geometry, raw_dir / "labelsTr" / f"{case}.nii.gz")
    about = "Synthetic CT-like phantom generated by tools/prepare_phantom.py"
    write_nnunet_description(raw_dir, "Phantom", ["CT"], LABELS, num_cases, about)


def _is_complete(output_dir: Path, stamp: dict) -> bool:
    stamp_path = output_dir / "phantom.json"
    if not stamp_path.is_file() or json.loads(stamp_path.read_text()) != stamp:
        return False
    try:
        description = load_description(output_dir / "preprocessed")
    except (FileNotFoundError, ValueError):
        return False
    files = [p for c in description.cases.values() for p in (c.image, c.label)]
    return all(description.resolve(p).is_file() for p in files)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    own = parser.add_argument_group("phantom")
    own.add_argument("--num_cases", type=int, default=20, help="number of cases (default 20)")
    own.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=list(DEFAULT_SIZE),
        metavar=("X", "Y", "Z"),
        help="raw voxels along physical x, y, z over a fixed field of view (default 160 160 48)",
    )
    own.add_argument("--force", action="store_true", help="regenerate even if up to date")
    parser.set_defaults(output_dir="data/phantom", num_workers=0, no_config=True, name="phantom")
    args = parser.parse_args(argv)
    if args.num_cases < 2:
        parser.error(f"--num_cases must be at least 2 (train and val), got {args.num_cases}")
    if args.raw_dir:
        parser.error("--raw_dir does not apply: the phantom is generated into <output_dir>/raw")
    setup_logging()
    try:
        options = driver.options_from_args(args, OPTIONS)
    except ValueError as err:
        parser.error(str(err))

    output_dir = Path(args.output_dir)
    stamp = {
        "generator_version": GENERATOR_VERSION,
        "num_cases": args.num_cases,
        "seed": args.seed,
        "size": list(args.size),
        "options": options.to_dict(),
        "split": [args.val_fraction, args.test_fraction, args.folds],
    }
    if not args.force and _is_complete(output_dir, stamp):
        logger.info("%s is up to date; nothing to do (use --force to regenerate)", output_dir)
        return 0
    owned = [output_dir / "raw", output_dir / "preprocessed"]
    stamp_path = output_dir / "phantom.json"
    if not args.force and not stamp_path.is_file() and any(p.exists() for p in owned):
        parser.error(f"{output_dir} holds data not made by this tool; pass --force to replace it")
    stamp_path.unlink(missing_ok=True)
    for path in owned:
        if path.exists():
            shutil.rmtree(path)

    start = time.perf_counter()
    write_raw(output_dir / "raw", args.num_cases, args.seed, tuple(args.size))
    generated = time.perf_counter()
    args.raw_dir = str(output_dir / "raw")
    status = driver.run(
        args, "phantom", read_nnunet_raw, output_dir=output_dir / "preprocessed", defaults=OPTIONS
    )
    if status != 0:
        return status
    write_text_atomic(stamp_path, json.dumps(stamp, indent=2) + "\n")
    description = load_description(output_dir / "preprocessed")
    shapes = [c.record.shape_after_resample for c in description.cases.values()]
    logger.info(
        "phantom: %d cases generated in %.1f s, preprocessed in %.1f s; shapes (z, y, x) from "
        "%s to %s",
        args.num_cases,
        generated - start,
        time.perf_counter() - generated,
        np.min(shapes, axis=0).tolist(),
        np.max(shapes, axis=0).tolist(),
    )
    return 0
