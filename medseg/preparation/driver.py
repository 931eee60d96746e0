"""The preparation driver shared by every dataset (`medseg-prepare <dataset>`, tools/prepare_*.py).

A module for a new dataset supplies where to download it (`Source`), how to find its cases in the
raw folder (a function returning a `RawDataset`) and its defaults; everything else is here:

    from medseg.preparation import driver
    parser = driver.make_parser(__doc__)             # the common flags below
    parser.add_argument(...)                         # the dataset's own flags
    args = parser.parse_args(argv)
    return driver.run(args, name="mydata", find=find_cases, sources=[driver.Source(url, md5=...)])

Common flags: where the data comes from (`--raw_dir` for files already on disk, which needs no
network; otherwise the sources are downloaded with resume and checked, then extracted safely into
`--download_dir`), where the result goes (`--output_dir`, default `data/<name>`; the log goes to
`<output_dir>/prepare.log`), the split (`--val_fraction`, `--test_fraction`, `--seed`, `--folds`),
workers (`--num_workers`), the preprocessing options of `medseg.preprocessing.options` (each may
be "auto", planned from the data), and the generated configs (`--config_dir`, default
`configs/<name>/`; `--no_config`).

Option precedence: built-in defaults < `tools/preprocess_globals.yml` (or `--globals`) <
`--options file.yml` < flags given on the command line.

Exit status: 0 when every case was prepared, 1 when some failed (they are listed at the end and
in dataset.json `failed_cases`; `--allow_failures` makes that 0), 2 for bad arguments or input.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from medseg.preprocessing.archive import ARCHIVE_SUFFIXES, extract
from medseg.preprocessing.cases import RawDataset
from medseg.preprocessing.configgen import (
    config_stem,
    dataset_config,
    model_configs,
    output_channels,
    run_config,
    write_configs,
)
from medseg.preprocessing.description import DatasetDescription
from medseg.preprocessing.download import download
from medseg.preprocessing.options import PrepareOptions
from medseg.preprocessing.planning import (
    MIN_ITERS,
    TrainingPlan,
    iterations_for_budget,
    training_plan,
)
from medseg.preprocessing.prepare import PreparationError, PrepareSettings, prepare_raw
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging
from medseg.utils.parallel import WorkerDiedError

logger = logging.getLogger("prepare")

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs/ and tools/ beside medseg/
GLOBALS = REPO / "tools" / "preprocess_globals.yml"
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
GITIGNORE = "# Written by medseg's dataset preparation: generated configs stay out of git.\n*\n"


@dataclasses.dataclass(frozen=True)
class Source:
    """One file to download: its URL, the publisher's checksum, where to extract it.

    `folder` is the subfolder of the download folder that an archive is extracted into ("" for
    the download folder itself).
    """

    url: str
    sha256: str | None = None
    md5: str | None = None
    folder: str = ""

    @property
    def filename(self) -> str:
        """The file name at the end of the URL."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def _auto_or_numbers(count: int, kind: type, words: tuple = ("auto",)) -> Callable:
    def parse(values: list[str]) -> Any:
        if len(values) == 1 and values[0].lower() in words:
            return None if values[0].lower() == "none" else values[0].lower()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} numbers or {' / '.join(words)}")
        return [kind(v) for v in values]

    return parse


def _label_map(values: list[str]) -> dict[int, int]:
    mapping = {}
    for item in values:
        old, sep, new = item.partition(":")
        if not sep or not old.strip().isdigit() or not new.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--label_map entries are old:new ids, got {item!r}")
        mapping[int(old)] = int(new)
    return mapping


# Flag -> (option key, converter of the raw nargs list)
_OPTION_FLAGS = {
    "target_spacing": _auto_or_numbers(3, float, ("auto", "none")),
    "patch_size": _auto_or_numbers(3, int),
    "ct_window": _auto_or_numbers(2, float),
    "normalization": lambda v: v[0] if len(v) == 1 else v,
    "label_map": _label_map,
    "ignore_labels": lambda v: [int(i) for i in v],
}


def make_parser(doc: str, raw_dir: bool = True, downloads: bool = True) -> argparse.ArgumentParser:
    """A parser with the common flags; the script's docstring is its description and epilog.

    `raw_dir=False` (the script names its input folders itself) drops `--raw_dir`,
    `downloads=False` (nothing to download) drops `--download_dir`, so `--help` lists only
    flags that apply.
    """
    summary, _, details = doc.strip().partition("\n\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details,
        formatter_class=HelpFormatter,
    )
    data = parser.add_argument_group("data")
    if raw_dir:
        data.add_argument("--raw_dir", help="use the raw files already in this folder (no network)")
    if downloads:
        data.add_argument(
            "--download_dir", help="where downloads are kept (default data/downloads)"
        )
    parser.set_defaults(
        **{k: None for k, on in (("raw_dir", raw_dir), ("download_dir", downloads)) if not on}
    )
    data.add_argument("--output_dir", help="prepared dataset folder (default data/<name>)")
    data.add_argument("--name", help="dataset name used for folders and configs")
    split = parser.add_argument_group("split")
    split.add_argument(
        "--val_fraction", type=float, default=0.2, help="share of the cases for validation"
    )
    split.add_argument(
        "--test_fraction", type=float, default=0.0, help="share of the cases held out for testing"
    )
    split.add_argument("--seed", type=int, default=0, help="split seed")
    split.add_argument("--folds", type=int, default=0, help="also write K cross-validation folds")
    pre = parser.add_argument_group("preprocessing (see medseg/preprocessing/options.py)")
    pre.add_argument("--target_spacing", nargs="+", metavar="Z Y X|auto|none")
    pre.add_argument("--patch_size", nargs="+", metavar="Z Y X|auto")
    pre.add_argument("--normalization", nargs="+", metavar="auto|ct|zscore|none")
    pre.add_argument("--ct_window", nargs="+", metavar="LO HI|auto")
    pre.add_argument("--no_crop", action="store_true", help="do not crop to the nonzero box")
    pre.add_argument("--image_order", type=int, choices=(1, 3), help="1 linear, 3 cubic")
    pre.add_argument("--label_map", nargs="+", metavar="OLD:NEW", help="remap raw label ids")
    pre.add_argument("--ignore_labels", nargs="+", metavar="ID", help="raw ids set to 255")
    pre.add_argument("--max_patch_voxels", type=int, help="memory budget of the planned patch")
    pre.add_argument("--use_gpu", action="store_true", help="resample with CuPy when possible")
    pre.add_argument(
        "--geometry_tolerance", type=float, help="mm a label may be off its scan's grid (1e-3)"
    )
    pre.add_argument("--options", help="YAML file with preprocessing options")
    pre.add_argument("--globals", default=str(GLOBALS), help="defaults file")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--num_workers", type=int, default=DEFAULT_WORKERS, help="processes")
    run_group.add_argument("--allow_failures", action="store_true", help="exit 0 despite bad cases")
    run_group.add_argument("--config_dir", help="generated configs (default configs/<name>/)")
    run_group.add_argument("--no_config", action="store_true", help="do not write configs")
    train = parser.add_argument_group("training plan (the generated configs)")
    train.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="device the run is planned for (auto: cuda when torch sees a GPU)",
    )
    train.add_argument(
        "--time_budget",
        type=float,
        metavar="MINUTES",
        help="CPU plan: iterations that fit this many minutes of training, at the seconds per "
        "iteration measured here (default 5)",
    )
    train.add_argument(
        "--iters", type=int, help="iterations (default: 15000 on a GPU, --time_budget on a CPU)"
    )
    return parser


def _read_yaml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{what} {path}: cannot read it ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a mapping of option: value")
    return data


def options_from_args(
    args: argparse.Namespace, defaults: dict[str, Any] | None = None
) -> PrepareOptions:
    """Built-in defaults < the dataset's `defaults` < globals file < --options file < flags."""
    values: dict[str, Any] = dict(defaults or {})
    if args.globals and Path(args.globals).is_file():
        values.update(_read_yaml(args.globals, "globals file"))
    if args.options:
        values.update(_read_yaml(args.options, "options file"))
    for flag, convert in _OPTION_FLAGS.items():
        given = getattr(args, flag)
        if given is not None:
            try:
                values[flag] = convert(given)
            except (argparse.ArgumentTypeError, ValueError) as err:
                raise ValueError(f"--{flag}: {err}") from None
    if args.no_crop:
        values["crop"] = None
    for flag in ("image_order", "max_patch_voxels", "geometry_tolerance"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.use_gpu:
        values["use_gpu"] = True
    return PrepareOptions.from_dict(values, "preprocessing options")


def fetch(
    args: argparse.Namespace, sources: Sequence[Source] | Callable[[], Sequence[Source]]
) -> Path:
    """The raw folder: `--raw_dir`, or the sources downloaded and extracted.

    `sources` may be a function returning them, called only when downloading (e.g. to look up
    the checksums a repository publishes).
    """
    if args.raw_dir:
        raw_dir = Path(args.raw_dir)
        if not raw_dir.is_dir():
            raise FileNotFoundError(f"--raw_dir {raw_dir} is not a folder")
        return raw_dir
    if callable(sources):
        sources = sources()
    if not sources:
        raise ValueError("this dataset cannot be downloaded automatically; pass --raw_dir")
    download_dir = Path(args.download_dir or "data/downloads")
    for source in sources:
        path = download(source.url, download_dir / source.filename, source.sha256, source.md5)
        if path.name.lower().endswith(ARCHIVE_SUFFIXES):
            extract(path, download_dir / source.folder)
    return download_dir


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "dataset"


def _dataset_root(output_dir: Path, config_dir: Path) -> tuple[str, str | None]:
    """`dataset_root` and `_base_` for generated configs: relative under the repo's data/."""
    data_root = (REPO / "data").resolve()
    configs = (REPO / "configs").resolve()
    inside_repo = config_dir.resolve().is_relative_to(configs)
    if inside_repo and output_dir.resolve().is_relative_to(data_root):
        base = os.path.relpath(configs / "_base_" / "global_configs.yml", config_dir.resolve())
        return str(output_dir.resolve().relative_to(data_root)), base
    return str(output_dir.resolve()), None


def run(
    args: argparse.Namespace,
    name: str,
    find: Callable[[Path], RawDataset],
    sources: Sequence[Source] | Callable[[], Sequence[Source]] = (),
    config_dir: Path | None = None,
    defaults: dict[str, Any] | None = None,
    output_dir: Path | None = None,
) -> int:
    """Fetch, find the cases, plan, prepare, write configs; returns the exit status.

    Args:
        args: Parsed flags of `make_parser` (and the script's own).
        name: Default dataset name (`--name` wins).
        find: The dataset's cases from the raw folder.
        sources: What to download when `--raw_dir` is not given (or a function returning it).
        config_dir: Default folder of the generated configs (`--config_dir` wins; else
            `configs/<name>/`).
        defaults: The dataset's preprocessing defaults (option keys of
            `medseg.preprocessing.options`), below the globals file, `--options` and flags.
        output_dir: Where the prepared dataset goes (default `--output_dir`, else data/<name>).
    """
    name = _slug(args.name or name)
    output_dir = Path(output_dir or args.output_dir or Path("data") / name)
    setup_logging(output_dir / "prepare.log")
    try:
        training = training_plan(_plan_device(args.device), args.time_budget)
        defaults = {"max_patch_voxels": training.max_patch_voxels, **(defaults or {})}
        options = options_from_args(args, defaults)
        raw = find(fetch(args, sources))
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    for case, why in sorted(raw.problems.items()):
        logger.error("case '%s' cannot be prepared: %s", case, why)
    status = 0
    settings = PrepareSettings(
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        folds=args.folds,
        num_workers=args.num_workers,
        allow_failures=args.allow_failures,
    )
    try:
        description = prepare_raw(raw, output_dir, options, settings)
    except PreparationError as err:
        description, status = err.description, 1
        if description is None:
            logger.error("%s", err)
            return 1
    except (ValueError, WorkerDiedError) as err:
        logger.error("%s", err)
        return 2 if isinstance(err, ValueError) else 1
    if not args.no_config:
        config_dir = Path(args.config_dir or config_dir or REPO / "configs" / name)
        if not config_dir.exists():
            # Like a virtualenv: a folder the tool creates keeps its generated files out of git.
            config_dir.mkdir(parents=True)
            (config_dir / ".gitignore").write_text(GITIGNORE)
        try:
            _write_plan_configs(args, name, description, output_dir, config_dir, training)
        except (ValueError, RuntimeError) as err:
            logger.error("%s", err)
            return 2
    failed = description.failed_cases
    if failed:
        logger.error("%d case(s) failed: %s", len(failed), ", ".join(sorted(failed)))
    return status


def _plan_device(device: str) -> str:
    """`--device` resolved: auto is cuda when torch sees a usable GPU."""
    from medseg.engine.runtime import select_device  # only here: preparing data needs no torch

    return select_device(device).type


def _time_models(
    description: DatasetDescription, output_dir: Path, training: TrainingPlan, folder: Path
) -> dict[str, float]:
    """Measured seconds per training iteration of each generated model on this machine."""
    from medseg.engine.runtime import select_device
    from medseg.engine.step_timer import seconds_per_iteration

    patch = description.plan["patch_size"]
    regions = description.regions
    config = dataset_config(
        str(output_dir.resolve()),
        len(description.labels),
        patch,
        ignore_labels=bool(description.label_rules.ignore_labels),
        regions=regions is not None,
    )
    channels = output_channels(len(description.labels), regions)
    models = model_configs(len(description.modalities), channels, training.widths)
    device = select_device(training.device)
    (folder / "dataset.yml").write_text(yaml.safe_dump(config))
    seconds = {}
    for prefix, model in models.items():
        path = folder / f"{prefix}.yml"
        run = run_config(model, training.batch_size, MIN_ITERS)
        path.write_text(yaml.safe_dump({"_base_": "dataset.yml", **run}))
        seconds[prefix] = seconds_per_iteration(path, device)
    return seconds


def _write_plan_configs(
    args: argparse.Namespace,
    name: str,
    description: DatasetDescription,
    output_dir: Path,
    config_dir: Path,
    training: TrainingPlan,
) -> None:
    """Time the models, size the iterations, write the configs and say how to train."""
    patch = description.plan["patch_size"]
    seconds: dict[str, float] = {}
    if args.iters is None:
        logger.info(
            "timing a few training steps of each model (%s) to size the run", training.device
        )
        with tempfile.TemporaryDirectory() as folder:
            seconds = _time_models(description, output_dir, training, Path(folder))
    iters = {}
    for prefix in training.widths:
        if args.iters is not None:
            iters[prefix] = args.iters
        elif training.budget_minutes is not None:
            iters[prefix] = iterations_for_budget(seconds[prefix], training.budget_minutes)
        else:
            iters[prefix] = training.iters
    notes = {
        prefix: f"{step:.2f} s/iteration measured at preparation: {iters[prefix]} iterations "
        f"~ {_minutes(step * iters[prefix])}"
        for prefix, step in seconds.items()
    }
    dataset_root, base = _dataset_root(output_dir, config_dir)
    done = write_configs(
        config_dir,
        name,
        dataset_root,
        len(description.labels),
        len(description.modalities),
        patch,
        training,
        iters,
        plan=description.plan,
        notes=notes,
        base=base,
        ignore_labels=bool(description.label_rules.ignore_labels),
        regions=description.regions,
    )
    for path, what in done.items():
        if what == "kept":
            logger.warning(
                "%s was edited by hand: kept as it is, not regenerated (delete it to get the "
                "generated version)",
                path,
            )
        else:
            logger.info("config %s: %s", what, path)
    size = "x".join(str(n) for n in patch)
    width = training.widths["vnet"]["base_channels"]
    summary = f"training plan ({training.device}): patch {size}, batch {training.batch_size}"
    if seconds:
        others = "; ".join(
            f"{p}: {seconds[p]:.2f} s/iteration, {iters[p]} iterations"
            for p in seconds
            if p != "vnet"
        )
        logger.info(
            "%s, VNet width %d: %.2f s/iteration measured here, %d iterations ~ %s (%s)",
            summary,
            width,
            seconds["vnet"],
            iters["vnet"],
            _minutes(seconds["vnet"] * iters["vnet"]),
            others,
        )
    else:
        logger.info(
            "%s, VNet width %d, %d iterations (--iters; leave it out to have the run timed "
            "and sized here)",
            summary,
            width,
            iters["vnet"],
        )
    logger.info(
        "to change it: --time_budget MINUTES (CPU), --iters N or --device cpu|cuda here, or "
        "train.py --iters N (at least %d makes sense); --max_patch_voxels for the patch",
        MIN_ITERS,
    )
    vnet = next(p for p in done if p.name.startswith(f"vnet_{config_stem(name, patch)}_"))
    logger.info(
        "train with: python train.py --config %s --save_dir output/%s --do_eval", vnet, name
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
