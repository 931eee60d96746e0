"""Export a trained model to ONNX with the deploy.yaml the onnxruntime runner needs.

Writes `<save_dir>/model.onnx` (opset >= 17, dynamic batch and spatial axes), `deploy.yaml`
(preprocessing recipe, modalities, classes, sliding-window settings, post-processing, output
kind), `config.yaml` (the resolved config, for provenance only) and `export.log`. Several
`--model_path`s (or a medseg-crossval save_dir: all its folds) are exported as one ensemble,
`fold_<k>.onnx` (or `model_<i>.onnx`) listed in deploy.yaml's `model.files`; the runner averages
their probabilities. Post-processing comes from the config's `postprocess:`, or from the choice
medseg-crossval made (`--postprocess_from`, taken by default when a crossval save_dir is given).

The graph returns per-window logits (or, with --with_softmax, probabilities), never an argmax:
the runner blends overlapping windows before it takes the argmax. MedicalSeg's export ended in
an argmax unless --without_argmax was given; that flag is accepted here and changes nothing.

Before `model.onnx` appears, onnxruntime (CPU) runs the exported graph on a random batch of two
windows and its output is compared with torch's; a difference above TOLERANCE × max(1, largest
|torch output|) fails the export and leaves no model.onnx.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.cvlibs import Config, ConfigError
from medseg.engine.cli import add_device_argument, add_model_arguments
from medseg.inference.deploy_config import DeployConfig
from medseg.utils.atomic import atomic_path
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging

logger = logging.getLogger("medseg.export")

MODEL_FILE = "model.onnx"
DEPLOY_FILE = "deploy.yaml"
MIN_OPSET = 17
# Largest accepted |onnxruntime − torch| relative to the output scale (max(1, max |torch|)):
# float32 kernels differ by ~1e-6 relative; an error in the graph shows as O(1) differences.
TOLERANCE = 1e-3
# With --fp16 the graph is compared with the float32 torch model: half precision carries ~3
# decimal digits, so differences of a few 1e-3 of the output scale are rounding, not a bug.
FP16_TOLERANCE = 2e-2
CHECK_BATCH = 2  # checks the dynamic batch axis too
CHECK_SEED = 0


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the names follow MedicalSeg's export.py."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    add_model_arguments(parser)
    parser.add_argument("--save_dir", default="output/export", help="where the files are written")
    parser.add_argument(
        "--without_argmax",
        action="store_true",
        help="accepted for MedicalSeg compatibility; medseg never exports an argmax",
    )
    parser.add_argument(
        "--with_softmax",
        action="store_true",
        help="the graph returns class probabilities instead of logits",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="float16 weights and activations (inputs and outputs stay float32); normalisation "
        "layers are kept in float32, where fp16 InstanceNorm breaks in onnxruntime and TensorRT",
    )
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument(
        "--postprocess_from",
        help="postprocessing.json written by medseg-crossval (or its save_dir): its chosen "
        "largest_component goes into deploy.yaml (default: taken from a crossval save_dir given "
        "as --model_path, else the config's postprocess:)",
    )
    add_device_argument(parser, default="cpu")
    parser.add_argument("--opts", nargs="+", default=[], help="config overrides key.sub=value")
    return parser.parse_args(argv)


NORM_TYPES = ("BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm")


def _half_except_norms(model: Any) -> Any:
    """A float16 copy of `model` whose normalisation layers run in float32 (cast in and out)."""
    import copy

    import torch

    class Float32Norm(torch.nn.Module):
        def __init__(self, norm: torch.nn.Module) -> None:
            super().__init__()
            self.norm = norm.float()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(x.float()).to(x.dtype)

    half = copy.deepcopy(model).half()
    for name, module in list(half.named_modules()):
        if type(module).__name__.startswith(NORM_TYPES):
            parent_name, _, child = name.rpartition(".")
            parent = half.get_submodule(parent_name) if parent_name else half
            setattr(parent, child, Float32Norm(module))
    return half


def _graph(model: Any, with_softmax: bool, fp16: bool = False, regions: bool = False) -> Any:
    """The module to trace: the model's full-resolution output, optionally through a softmax.

    With `fp16`, the model runs in float16 (norms in float32) between float32 input and output.
    A region-trained model (`regions`) gets a sigmoid per channel instead of the softmax.
    """
    import torch

    net = _half_except_norms(model) if fp16 else model

    class ExportGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x.half() if fp16 else x)
            if isinstance(out, (list, tuple)):
                out = out[0]
            out = out.float()
            if not with_softmax:
                return out
            return torch.sigmoid(out) if regions else torch.softmax(out, dim=1)

    return ExportGraph().eval()


def _check(onnx_path: Path, graph: Any, sample: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Largest |onnxruntime − torch| on `sample`; raises ExportError above the tolerance."""
    import onnxruntime as ort
    import torch

    device = next(graph.parameters()).device
    with torch.inference_mode():
        expected = graph(torch.from_numpy(sample).to(device)).float().cpu().numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: sample})[0]
    if got.shape != expected.shape:
        raise ExportError(
            f"onnxruntime output shape {got.shape} differs from torch's {expected.shape}"
        )
    difference = float(np.max(np.abs(got - expected)))
    limit = tolerance * max(1.0, float(np.max(np.abs(expected))))
    logger.info(
        "onnxruntime vs torch on a random %s batch: max |difference| %.3g (allowed %.3g)",
        sample.shape,
        difference,
        limit,
    )
    if not difference <= limit:
        raise ExportError(
            f"onnxruntime output differs from torch by up to {difference:.3g} "
            f"(allowed {limit:.3g}); the graph does not reproduce the model, so no "
            f"{MODEL_FILE} was written"
        )
    return difference


def export_onnx(
    graph: Any,
    path: Path,
    sample: np.ndarray,
    opset: int,
    output: str,
    reference: Any = None,
    tolerance: float = TOLERANCE,
) -> float:
    """Trace `graph` into `path` atomically once it passes `_check`; returns the difference.

    The check compares with `reference` (default: `graph` itself) within `tolerance`.
    """
    import torch

    device = next(graph.parameters()).device
    axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The TorchScript exporter is chosen on purpose (it needs no onnxscript); its
            # deprecation notices say nothing the user can act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                graph,
                (torch.from_numpy(sample[:1]).to(device),),
                str(tmp),
                input_names=["image"],
                output_names=[output],
                dynamic_axes={"image": axes, output: axes},
                opset_version=opset,
                dynamo=False,
            )
        return _check(tmp, graph if reference is None else reference, sample, tolerance)


def _check_patch(patch: tuple[int, ...], model: Any, path: str) -> None:
    """The window must be a size the network takes: offset + m · multiple per axis, m >= 1."""
    rules = zip(patch, model.size_offset, model.size_multiple, strict=True)
    if any(n < off + mult or (n - off) % mult for n, off, mult in rules):
        raise ConfigError(
            f"{type(model).__name__} takes sizes offset + m * multiple per axis (z, y, x), with "
            f"offset {tuple(model.size_offset)} and multiple {tuple(model.size_multiple)}, m >= 1; "
            f"got {tuple(patch)}",
            path,
            "inference.patch_size",
        )


def build_deploy_config(
    cfg: Config,
    model: Any,
    args: argparse.Namespace,
    save_dir: Path,
    model_path: str | None = None,
    files: Sequence[str] = (MODEL_FILE,),
) -> DeployConfig:
    """Collect what inference needs from the model folder and the config.

    Recipe, modalities and labels come from the model folder's model_info.json (older
    checkpoints: the training dataset's dataset.json); window and post-processing from the config,
    so --opts can change them. `model_path` is the (first) model's (default `args.model_path`),
    `files` the ONNX files of the export.
    """
    from medseg.inference.model_info import model_info_for
    from medseg.inference.settings import MIRROR_AXES

    model_path = args.model_path if model_path is None else model_path
    info = model_info_for(model_path, cfg, model)
    if info.recipe is None:
        raise ConfigError(
            "the training dataset's dataset.json has no 'recipe'; prepare the dataset with "
            "medseg's tools (e.g. tools/prepare_phantom.py) so inference can repeat it",
            cfg.path,
            "train_dataset.dataset_root",
        )
    channels = info.num_classes if info.regions is None else len(info.regions)
    if len(info.modalities) != model.in_channels or channels != model.num_classes:
        predicted = "classes" if info.regions is None else "regions"
        raise ConfigError(
            f"the model takes {model.in_channels} channel(s) and predicts {model.num_classes} "
            f"channels, but its model folder / dataset.json lists modalities "
            f"{list(info.modalities)} and {channels} {predicted}",
            cfg.path,
            "model.in_channels",
        )
    settings = cfg.inference_settings(MIRROR_AXES)  # the runner mirrors by default
    _check_patch(settings.patch_size, model, cfg.where("inference"))
    return DeployConfig(
        model_path=save_dir / files[0],
        model_paths=tuple(save_dir / name for name in files),
        output="probabilities" if args.with_softmax else "logits",
        input_channels=model.in_channels,
        num_classes=info.num_classes,
        opset=args.opset,
        precision="fp16" if getattr(args, "fp16", False) else "fp32",
        modalities=info.modalities,
        classes=dict(info.classes),
        recipe=info.recipe,
        inference=settings,
        largest_component=cfg.postprocess.largest_component,
        medseg_version=__version__,
        source={"config": str(cfg.path), "model_path": str(model_path)},
        regions=info.regions,
    )


def onnx_names(loaded: Sequence[Any]) -> list[str]:
    """model.onnx for one model; fold_<k>.onnx for distinct folds, else model_<i>.onnx."""
    if len(loaded) == 1:
        return [MODEL_FILE]
    folds = [m.info.fold for m in loaded]
    if None not in folds and len(set(folds)) == len(folds):
        return [f"fold_{k}.onnx" for k in folds]
    return [f"model_{i}.onnx" for i in range(len(loaded))]


def _largest_component(args: argparse.Namespace, num_classes: int) -> tuple[int, ...] | None:
    """The crossval choice (--postprocess_from, or a crossval save_dir's), or None: the config's."""
    from medseg.inference.postprocess_choice import load_largest_component, postprocessing_path

    source = args.postprocess_from
    if source is None:
        found = [
            p for p in args.model_path if Path(p).is_dir() and postprocessing_path(p).is_file()
        ]
        if not found:
            return None
        source = found[0]
    ids = load_largest_component(source, num_classes)
    logger.info(
        "post-processing chosen on cross-validation (%s): largest component of class(es) %s",
        postprocessing_path(source),
        list(ids) or "none",
    )
    return ids


def main(argv: list[str] | None = None) -> int:
    """Export; returns the exit code (0 done, 2 bad input, 1 failed check)."""
    args = parse_args(argv)
    save_dir = Path(args.save_dir)
    setup_logging(save_dir / "export.log")
    from medseg.engine.ensemble import load_models
    from medseg.engine.folds import expand_model_paths
    from medseg.engine.runtime import select_device

    try:
        if args.opset < MIN_OPSET:
            raise ValueError(f"--opset must be >= {MIN_OPSET}, got {args.opset}")
        loaded = load_models(args.config, expand_model_paths(args.model_path), args.opts)
        cfg, first = loaded[0].cfg, loaded[0].model
        files = onnx_names(loaded)
        deploy = build_deploy_config(cfg, first, args, save_dir, loaded[0].path, files)
        changes: dict[str, Any] = {}
        ids = _largest_component(args, deploy.num_classes)
        if ids is not None:
            changes["largest_component"] = ids
        if len(loaded) > 1:
            changes["source"] = {**deploy.source, "model_path": [m.path for m in loaded]}
        deploy = dataclasses.replace(deploy, **changes)
        device = select_device(args.device)
        models = [m.model.to(device).eval() for m in loaded]
        regions = deploy.regions is not None
        graphs = [_graph(model, args.with_softmax, args.fp16, regions) for model in models]
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    rng = np.random.default_rng(CHECK_SEED)
    sample = rng.standard_normal(
        (CHECK_BATCH, first.in_channels, *deploy.inference.patch_size), dtype=np.float32
    )
    difference = 0.0
    for model, graph, path in zip(models, graphs, deploy.model_paths, strict=True):
        try:
            difference = max(
                difference,
                export_onnx(
                    graph,
                    path,
                    sample,
                    args.opset,
                    deploy.output,
                    reference=(
                        _graph(model, args.with_softmax, regions=regions) if args.fp16 else None
                    ),
                    tolerance=FP16_TOLERANCE if args.fp16 else TOLERANCE,
                ),
            )
        except (ExportError, ValueError) as err:
            logger.error("export of %s failed: %s", path.name, err)
            return 1
    deploy.write(save_dir / DEPLOY_FILE)
    cfg.dump(save_dir / "config.yaml")
    logger.info(
        "exported %s (%s, %s, opset %d, max |onnx - torch float32| = %.3g) and %s to %s",
        ", ".join(files),
        deploy.output,
        deploy.precision,
        args.opset,
        difference,
        DEPLOY_FILE,
        save_dir,
    )
    return 0
