"""Command-line options shared by the scripts that score label maps (val.py, tools/evaluate.py)."""

from __future__ import annotations

import argparse

from medseg.metrics.case import METRIC_NAMES


def add_metric_arguments(parser: argparse.ArgumentParser, note: str) -> None:
    """Add `--metrics` (default dice hd95) and `--nsd_tolerance`; `note` ends the help text."""
    parser.add_argument(
        "--metrics",
        nargs="+",
        choices=METRIC_NAMES,
        default=["dice", "hd95"],
        metavar="METRIC",
        help=f"any of {', '.join(METRIC_NAMES)} ({note})",
    )
    parser.add_argument("--nsd_tolerance", type=float, help="NSD tolerance in mm (for nsd)")


def check_metric_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject `--metrics nsd` without a positive `--nsd_tolerance` (exits through `parser`)."""
    if "nsd" in args.metrics and (args.nsd_tolerance is None or args.nsd_tolerance <= 0):
        parser.error("--metrics nsd needs --nsd_tolerance (a positive distance in mm)")
