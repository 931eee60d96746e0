"""Inference memory and time against the class count: the whole-volume path vs the streaming one.

For each scan size and class count K, an untrained VNet with K outputs is exported to ONNX (the
point is memory and time, not accuracy) and one synthetic CT at 0.8 × 0.8 × 1.0 mm is predicted
with the phantom's recipe (tools/prepare_phantom.py: LPS, crop, 2.5 × 1.6 × 1.6 mm, CT window)
on onnxruntime's CPU provider, without TTA, in a fresh process per measurement:

- "before": the whole-volume path medseg had until this change: one (K, Z, Y, X) accumulator on
  the preprocessed grid, softmax, then all K channels resampled onto the scan's grid at once and
  arg-maxed (`resample_image` + `argmax`, what `probabilities_to_original_labels` did);
- "every": `CasePipeline` with the slab back-mapping resampling every class (a running argmax
  over all K), what medseg did before `interpolated_argmax`;
- "after": `CasePipeline` (what val.py, the runner and `Segmenter` run): the streaming sliding
  window with slab back-mapping that resamples only the classes that can win a voxel.

Reported: peak RSS of the process, the peak above its base (the process with the ONNX session
and the int16 scan in memory, as the runner has it after reading), in bytes per scan voxel, and
the back-mapping time (softmax, resampling, argmax, filter) over the network time (windows,
blending). The labels of all paths that ran are compared. `--throughput` also times whole
cases (read → written NIfTI) through the runner's `Segmenter` on phantom scans and on the real CT
of tests/data/totalseg_small, with and without mirror TTA.

Usage:
    python benchmarks/bench_scaling.py --sizes 256x256x128 512x512x256 --classes 4 32
    nice -n 5 python benchmarks/bench_scaling.py --sizes 512x512x512 --classes 4 32 128 \
        --paths after
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import in_fresh_process, reset_peak, status_kib

PATCH = (48, 64, 80)
SPACING = (1.0, 0.8, 0.8)  # z, y, x in mm
TOTALSEG_CT = Path(__file__).resolve().parents[1] / "tests" / "data" / "totalseg_small"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256x128"], help="XxYxZ voxels")
    parser.add_argument("--classes", nargs="+", type=int, default=[4, 32])
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=("before", "every", "after"),
        default=["before", "every", "after"],
    )
    parser.add_argument("--base_channels", type=int, default=8, help="VNet width")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--throughput", action="store_true", help="also time whole cases")
    return parser.parse_args()


def export_vnet(num_classes: int, base_channels: int, folder: Path) -> Path:
    """An untrained VNet with `num_classes` outputs as model.onnx + deploy.yaml in `folder`."""
    import torch

    from medseg import __version__
    from medseg.commands import export
    from medseg.inference.deploy_config import DeployConfig
    from medseg.inference.settings import MIRROR_AXES, InferenceSettings
    from medseg.models.vnet import VNet
    from medseg.preparation import phantom

    torch.manual_seed(0)
    model = VNet(in_channels=1, num_classes=num_classes, base_channels=base_channels).eval()
    sample = np.random.default_rng(0).standard_normal((2, 1, *PATCH), dtype=np.float32)
    deploy = DeployConfig(
        model_path=folder / "model.onnx",
        output="logits",
        input_channels=1,
        num_classes=num_classes,
        opset=17,
        modalities=("CT",),
        classes={i: f"class_{i}" for i in range(num_classes)},
        recipe=phantom.recipe(),
        inference=InferenceSettings(
            patch_size=PATCH, overlap=0.25, batch_size=2, tta_axes=MIRROR_AXES
        ),  # as export.py writes it; the memory table turns the mirroring off
        medseg_version=__version__,
    )
    export.export_onnx(export._graph(model, False), deploy.model_path, sample, 17, "logits")
    deploy.write(folder / "deploy.yaml")
    return folder / "deploy.yaml"


def synthetic_ct(shape_zyx: tuple[int, int, int]) -> tuple[np.ndarray, object]:
    """An int16 CT-like scan: air around an elliptic body of soft tissue with brighter blobs."""
    from medseg.preprocessing.io import Geometry

    y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape_zyx[1:])
    body = (y[None, :, None] / 0.8) ** 2 + (x[None, None, :] / 0.9) ** 2 < 1.0
    body = np.broadcast_to(body, shape_zyx)
    scan = np.full(shape_zyx, -1000, dtype=np.int16)
    scan[body] = 40
    rng = np.random.default_rng(0)
    scan += rng.integers(-20, 20, size=shape_zyx, dtype=np.int16)
    geometry = Geometry(
        shape=shape_zyx, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=np.eye(3)
    )
    return scan, geometry


def _measure(deploy_yaml: str, shape: tuple, path: str, threads, queue) -> None:
    """Child process: one case on one path; puts (peak MiB, above base B/voxel, times, labels)."""
    from medseg.inference.case import CasePipeline
    from medseg.inference.deploy_config import load_deploy_config
    from medseg.inference.onnx_predictor import OnnxPredictor
    from medseg.inference.settings import with_tta
    from medseg.inference.sliding_window import sliding_window_inference, softmax
    from medseg.preprocessing.crop import pad_from_box
    from medseg.preprocessing.orientation import undo_reorient
    from medseg.preprocessing.pipeline import preprocess_case
    from medseg.preprocessing.resample import resample_image

    deploy = load_deploy_config(deploy_yaml)
    predictor = OnnxPredictor(deploy.model_path, "cpu", threads)
    raw, geometry = synthetic_ct(shape)
    base_kib = reset_peak()
    image = raw[None].astype(np.float32)
    image, _, record = preprocess_case(image, geometry, deploy.recipe)
    settings = with_tta(deploy.inference, False)
    if path == "every":
        from medseg.preprocessing import backmap as slab_backmap

        slab_backmap.interpolated_argmax = lambda *args: False  # always the every-class fallback
    if path in ("every", "after"):
        from medseg.inference.timing import StageTimer

        timer = StageTimer()
        label = (
            CasePipeline(predictor, settings, deploy.num_classes)
            .preprocessed(image, record, timer=timer)
            .label
        )
        network, backmap = timer.seconds["inference"], timer.seconds["postprocess"]
    else:
        start = time.perf_counter()
        logits = sliding_window_inference(
            image, predictor, settings.patch_size, settings.overlap, settings.batch_size
        )
        network = time.perf_counter() - start
        start = time.perf_counter()
        resampled = resample_image(softmax(logits), record.shape_after_crop, 1)
        cropped = resampled.argmax(axis=0).astype(np.uint8)
        label = pad_from_box(cropped, record.crop_box, record.shape_after_reorient, 0)
        label = np.ascontiguousarray(undo_reorient(label, record.permutation, record.flips))
        backmap = time.perf_counter() - start
    peak_kib = status_kib("VmHWM")
    above = (peak_kib - base_kib) * 1024 / np.prod(shape)
    digest = np.bincount(label.ravel(), minlength=deploy.num_classes)
    queue.put(
        (
            peak_kib / 1024,
            above,
            network,
            backmap,
            label.shape,
            digest.tolist(),
            hashlib.sha256(label.tobytes()).hexdigest(),
        )
    )


def _throughput(deploy_yaml: str, scans: list[str], tta: bool, queue) -> None:
    from medseg.inference import Segmenter
    from medseg.inference.timing import StageTimer
    from medseg.preprocessing.io import read_case, write_volume

    segmenter = Segmenter(deploy_yaml, device="cpu", tta=tta)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for scan in scans:
            start = time.perf_counter()
            image, geometry = read_case([scan])
            result = segmenter.predict(image, geometry, timer=StageTimer())
            write_volume(result.label, geometry, Path(out) / "label.nii.gz")
            seconds = time.perf_counter() - start
            rows.append(
                (Path(scan).name, geometry.shape, seconds, np.prod(geometry.shape) / seconds / 1e6)
            )
    queue.put(rows)


def main() -> None:
    args = parse_args()
    from medseg.utils.machine import machine_lines

    for line in machine_lines(
        ("numpy", "scipy", "SimpleITK", "onnxruntime", "onnxruntime-gpu", "torch")
    ):
        print(line)
    print(
        f"VNet width {args.base_channels}, window {PATCH}, overlap 0.25, 2 windows per call, no TTA"
    )
    print(
        f"{'scan (x y z)':<16}{'K':>5}{'path':>8}{'peak RSS':>11}{'B/voxel':>9}"
        f"{'network':>10}{'back-map':>10}{'ratio':>7}"
    )
    with tempfile.TemporaryDirectory() as root:
        exported: dict[int, Path] = {}
        for size in args.sizes:
            x, y, z = (int(v) for v in size.lower().split("x"))
            for num_classes in args.classes:
                if num_classes not in exported:
                    folder = Path(root) / f"k{num_classes}"
                    folder.mkdir()
                    exported[num_classes] = export_vnet(num_classes, args.base_channels, folder)
                labels = {}
                for path in args.paths:
                    try:
                        peak, above, network, backmap, _, _, digest = in_fresh_process(
                            _measure, str(exported[num_classes]), (z, y, x), path, args.threads
                        )
                    except RuntimeError as err:  # killed: out of memory
                        print(f"{size:<16}{num_classes:>5}{path:>8}  failed: {err}")
                        continue
                    labels[path] = digest
                    print(
                        f"{size:<16}{num_classes:>5}{path:>8}{peak / 1024:>9.2f}GB{above:>9.1f}"
                        f"{network:>9.1f}s{backmap:>9.1f}s{backmap / network:>7.2f}",
                        flush=True,
                    )
                if len(labels) > 1:
                    same = "identical" if len(set(labels.values())) == 1 else "DIFFERENT"
                    print(f"{'':<16}{'':>5}  labels of {', '.join(labels)}: {same}")
        if args.throughput:
            _print_throughput(
                exported.get(4) or export_vnet(4, args.base_channels, Path(root) / "t"), root
            )


def _print_throughput(deploy_yaml: Path, root: str) -> None:
    """Whole cases through `Segmenter`: phantom scans and the TotalSegmentator sample CT."""
    from medseg.preparation import phantom

    folder = Path(root) / "phantom"
    phantom.main(["--num_cases", "3", "--output_dir", str(folder)])
    scans = sorted(str(p) for p in (folder / "raw" / "imagesTr").glob("*_0000.nii.gz"))
    scans.append(str(TOTALSEG_CT / "example_ct_sm.nii.gz"))
    print("\nper-case throughput (read, preprocess, predict, back-map, write NIfTI), K = 4:")
    for tta in (False, True):
        for name, shape, seconds, rate in in_fresh_process(
            _throughput, str(deploy_yaml), scans, tta
        ):
            mirror = "on " if tta else "off"
            print(f"  {name:<28} {shape!s:<16} TTA {mirror} {seconds:7.2f} s {rate:6.2f} Mvox/s")


if __name__ == "__main__":
    main()
