"""Segmentation quality: medseg side by side with nnU-Net v2 on unseen phantom cases.

Both systems train on the same 16 phantom cases (seed 0) with the same iterations, batch (2),
patch (32×48×48) and target spacing (2.5×1.6×1.6 mm), and predict the same 20 unseen cases
(generated with another seed); every prediction folder is scored by `tools/evaluate.py` in the
scans' own space (foreground Dice and HD95, mean over cases and classes).

nnU-Net is a benchmark peer only, never a medseg dependency. Install it in its own virtualenv
(torch pinned in the same command: an unpinned torch pulls a multi-GB CUDA build):

    python3 -m venv /work/venv-nnunet
    /work/venv-nnunet/bin/pip install torch==2.13.0 nnunetv2
    python benchmarks/bench_quality.py --nnunet_python /work/venv-nnunet/bin/python \
        --iters 100 600 [--models vnet unet3d] [--seed 0] [--work_dir output/bench_quality]

nnU-Net's plans are made by its own planner, then edited to the patch, batch and spacing above,
with the network topology its planner derives for that patch and spacing (and preprocessed
again). Its trainer is nnUNetTrainer with a short schedule: this script writes
`nnUNetTrainer_medsegBench.py` at the top level of `nnunetv2/training/nnUNetTrainer/` in that
virtualenv, because nnU-Net's trainer lookup walks the package and would otherwise import the
`variants` modules, which need timm/torchvision (PyPI's torchvision fails against the CPU
torch). The 100 iterations are 4 epochs of 25; 600 are 24 epochs of 25, so its poly schedule
decays over the run as medseg's does. Its final validation on the 4 validation cases is skipped
(on this CPU it costs a minute per case with mirroring): both systems are scored on the 20
unseen cases only. Its split is medseg's (fold 0 = medseg's train/val lists).
Neither side mirrors at test time by default (the phantom configs set no `tta_axes`), so the
compute is equal; `--nnunet_tta` gives nnU-Net its default mirroring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from medseg.preprocessing.description import load_description
from medseg.utils.machine import machine_lines

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "vnet": REPO / "configs/phantom/vnet_phantom_32_48_48_600.yml",
    "unet3d": REPO / "configs/phantom/unet3d_phantom_32_48_48_600.yml",
}
DATASET_ID, DATASET = 901, "Dataset901_Phantom"
PATCH, BATCH, SPACING = [32, 48, 48], 2, [2.5, 1.6, 1.6]
ITERS_PER_EPOCH = 25
TRAINER = "nnUNetTrainer_medsegBench"
TRAINER_SOURCE = '''"""Written by medseg's benchmarks/bench_quality.py: a short nnUNetTrainer."""
import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_medsegBench(nnUNetTrainer):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        total = int(os.environ["MEDSEG_BENCH_ITERS"])
        self.num_iterations_per_epoch = min(total, {per_epoch})
        self.num_epochs = max(total // self.num_iterations_per_epoch, 1)
        self.num_val_iterations_per_epoch = 1

    def perform_actual_validation(self, save_probabilities=False):
        """Skipped: the benchmark scores nnUNetv2_predict's outputs on the unseen test cases."""
'''


def _run(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run a command with its output in `log`; return the wall time; raise on failure."""
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed; see {log}")
    return time.perf_counter() - start


def _score(pred_dir: Path, test_raw: Path, save_dir: Path) -> dict[str, float]:
    """Foreground Dice and HD95 of a prediction folder, via tools/evaluate.py."""
    _run(
        [
            sys.executable, str(REPO / "tools/evaluate.py"), "--pred_dir", str(pred_dir),
            "--gt_dir", str(test_raw / "labelsTr"), "--save_dir", str(save_dir),
            "--label_names", str(test_raw / "dataset.json"), "--metrics", "dice", "hd95",
        ],
        save_dir.with_suffix(".log"),
    )  # fmt: skip
    summary = json.loads((save_dir / "summary.json").read_text())
    scores = {
        "dice": summary["foreground_mean"]["dice"],
        "hd95": summary["foreground_mean"]["hd95"],
    }
    for name, entry in summary["per_class"].items():
        scores[name] = entry["dice"]["mean"]
    return scores


def _prepare(work: Path) -> tuple[Path, Path]:
    """Training phantom (seed 0) and unseen test phantom (seed 11); returns their folders."""
    for name, seed in (("train", 0), ("test", 11)):
        _run(
            [sys.executable, str(REPO / "tools/prepare_phantom.py"), "--seed", str(seed),
             "--output_dir", str(work / name)],
            work / f"prepare_{name}.log",
        )  # fmt: skip
    test_pre = work / "test" / "preprocessed"
    lists = [(test_pre / f).read_text() for f in ("train_list.txt", "val_list.txt")]
    (test_pre / "all_list.txt").write_text("".join(lists))
    return work / "train", work / "test"


def _medseg(model: str, iters: int, seed: int, train: Path, test: Path, work: Path) -> dict:
    out = work / f"medseg_{model}_{iters}"
    data = ["--opts", f"data_root={work}/", "train_dataset.dataset_root=train/preprocessed"]
    seconds = _run(
        [sys.executable, str(REPO / "train.py"), "--config", str(CONFIGS[model]), "--save_dir",
         str(out), "--iters", str(iters), "--save_interval", str(iters), "--seed", str(seed),
         *data, "val_dataset.dataset_root=train/preprocessed"],
        work / f"medseg_{model}_{iters}_train.log",
    )  # fmt: skip
    _run(
        [sys.executable, str(REPO / "val.py"), "--config", str(CONFIGS[model]), "--model_path",
         str(out / f"iter_{iters}" / "model.pth"), "--save_dir", str(out / "test"),
         "--save_predictions", "--no_tta", *data, "val_dataset.dataset_root=test/preprocessed",
         "val_dataset.file_list=all_list.txt"],
        work / f"medseg_{model}_{iters}_val.log",
    )  # fmt: skip
    scores = _score(out / "test" / "predictions", test / "raw", out / "scores")
    return {"system": f"medseg {model}", "iters": iters, "train_s": seconds, **scores}


def _nnunet_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[key] = str(work / "nnunet" / key)
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    env["nnUNet_n_proc_DA"] = "1"  # one augmentation worker (0 breaks its planner's thread setup)
    return env


def _nnunet_topology(python: str) -> dict:
    """nnU-Net's own network topology (stages, strides, kernels) for medseg's patch and spacing.

    The planned network was sized for nnU-Net's larger patch; its strides need not divide ours.
    """
    query = (
        "import json; from nnunetv2.experiment_planning.experiment_planners.network_topology "
        "import get_pool_and_conv_props as p; "
        f"_, pools, convs, patch, _ = p({SPACING}, {PATCH}, 4, 999999); "
        "print(json.dumps([[list(s) for s in pools], [list(k) for k in convs], "
        "[int(n) for n in patch]]))"
    )
    out = subprocess.run([python, "-c", query], capture_output=True, text=True, check=True)
    pools, convs, patch = json.loads(out.stdout)
    if patch != PATCH:
        raise RuntimeError(f"nnU-Net's topology changed the patch {PATCH} to {patch}")
    stages = len(convs)
    return {
        "n_stages": stages,
        "features_per_stage": [min(32 * 2**s, 320) for s in range(stages)],
        "kernel_sizes": convs,
        "strides": pools,
        "n_conv_per_stage": [2] * stages,
        "n_conv_per_stage_decoder": [2] * (stages - 1),
    }


def _nnunet_setup(python: str, train: Path, work: Path) -> dict[str, str]:
    """Raw dataset, plans edited to medseg's patch/batch/spacing, preprocessing, the split."""
    env = _nnunet_env(work)
    raw = Path(env["nnUNet_raw"]) / DATASET
    if not raw.exists():
        raw.symlink_to((train / "raw").resolve(), target_is_directory=True)
    bindir = Path(python).parent
    logs = work / "nnunet"
    _run([str(bindir / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c",
          "3d_fullres", "--no_pp"], logs / "plan.log", env)  # fmt: skip
    plans_path = Path(env["nnUNet_preprocessed"]) / DATASET / "nnUNetPlans.json"
    plans = json.loads(plans_path.read_text())
    config = plans["configurations"]["3d_fullres"]
    config.update(patch_size=PATCH, batch_size=BATCH, spacing=SPACING)
    config["architecture"]["arch_kwargs"].update(_nnunet_topology(python))
    plans_path.write_text(json.dumps(plans, indent=2))
    _run([str(bindir / "nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
          "-np", "1"], logs / "preprocess.log", env)  # fmt: skip
    splits = load_description(train / "preprocessed").splits
    fold = {"train": sorted(splits["train"]), "val": sorted(splits["val"])}
    split_path = Path(env["nnUNet_preprocessed"]) / DATASET / "splits_final.json"
    split_path.write_text(json.dumps([fold], indent=2))
    package = subprocess.run(
        [python, "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    trainer_file = Path(package) / "training" / "nnUNetTrainer" / f"{TRAINER}.py"
    trainer_file.write_text(TRAINER_SOURCE.format(per_epoch=ITERS_PER_EPOCH))
    return env


def _nnunet(python: str, iters: int, env: dict, test: Path, work: Path, tta: bool) -> dict:
    bindir = Path(python).parent
    env = {**env, "MEDSEG_BENCH_ITERS": str(iters)}
    results = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres"
    if results.exists():
        subprocess.run(["rm", "-rf", str(results)], check=True)
    train = [str(bindir / "nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "0", "-tr", TRAINER]
    seconds = _run([*train, "-device", "cpu"], work / f"nnunet_{iters}_train.log", env)
    pred = work / f"nnunet_{iters}" / "predictions"
    command = [
        str(bindir / "nnUNetv2_predict"), "-i", str(test / "raw" / "imagesTr"), "-o", str(pred),
        "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-chk",
        "checkpoint_final.pth", "-device", "cpu", "-npp", "1", "-nps", "1",
    ]  # fmt: skip
    if not tta:
        command.append("--disable_tta")
    _run(command, work / f"nnunet_{iters}_predict.log", env)
    scores = _score(pred, test / "raw", work / f"nnunet_{iters}" / "scores")
    return {"system": "nnU-Net v2", "iters": iters, "train_s": seconds, **scores}


def main(argv: list[str] | None = None) -> int:
    """Run every system at every iteration count and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnunet_python", help="python of the nnU-Net virtualenv (else skipped)")
    parser.add_argument("--iters", type=int, nargs="+", default=[100, 600])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["vnet"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nnunet_tta", action="store_true", help="nnU-Net with its mirroring")
    parser.add_argument("--work_dir", default="output/bench_quality")
    args = parser.parse_args(argv)
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print("\n".join(machine_lines(("numpy", "torch"))))
    if args.nnunet_python:
        query = "import importlib.metadata as m; print(m.version('nnunetv2'))"
        version = subprocess.run(
            [args.nnunet_python, "-c", query], capture_output=True, text=True, check=False
        ).stdout.strip()
        print(f"nnunetv2 {version or 'not found'} ({args.nnunet_python})")
    train, test = _prepare(work)
    env = _nnunet_setup(args.nnunet_python, train, work) if args.nnunet_python else None
    rows = []
    for iters in args.iters:  # systems interleaved per iteration count
        for model in args.models:
            rows.append(_medseg(model, iters, args.seed, train, test, work))
            print(rows[-1], flush=True)
        if env is not None:
            rows.append(_nnunet(args.nnunet_python, iters, env, test, work, args.nnunet_tta))
            print(rows[-1], flush=True)
    print("\n| system | iterations | train s | liver | spleen | kidney | fg Dice | HD95 mm |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['system']} | {r['iters']} | {r['train_s']:.0f} | {r['liver']:.3f} | "
            f"{r['spleen']:.3f} | {r['kidney']:.3f} | {r['dice']:.3f} | {r['hd95']:.2f} |"
        )
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
