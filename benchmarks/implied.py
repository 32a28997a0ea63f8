"""The implied-pairs lever (``training.implied_pairs``) measured side by side: one trial config trained
on one data set with each ratio and each seed, test accuracy and AUC (thresholds chosen on validation).

    python -m benchmarks.implied --data mnist5k --ratios 0,4,10 --seeds 0,1 model.distance=l2 …

The ratio is a lever of ``benchmarks.levers`` (its table, one row per ratio, no base). Not part of
``make bench`` (minutes per row on the shared data sets); its rows are quoted in benchmarks/README.md
with the command that produced them.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.cli import run_tool
from benchmarks.levers import listed, override_key, run


def _ratios(text: str) -> list[float]:
    """An argparse type: comma-separated ratios, numbers ≥ 0."""
    values = listed(float)(text)
    if any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: ratios are numbers ≥ 0")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--ratios", default=[0.0, 4.0], type=_ratios, help="e.g. 0,4,10 (numbers ≥ 0)")
    parser.add_argument("--seeds", default=[0, 1], type=listed(int), help="e.g. 0,1,2")
    parser.add_argument("overrides", nargs="*", help="the trial config, as train overrides")
    args = parser.parse_intermixed_args(argv)  # overrides may come before and after the options
    if any(override_key(o) == "training.implied_pairs" for o in args.overrides):
        parser.error("set the ratios with --ratios, not training.implied_pairs=")
    variants = [(f"{r:g}", [f"training.implied_pairs={r}"]) for r in args.ratios]
    return run(args.data, variants, args.seeds, args.overrides, base=None, column="training.implied_pairs")


if __name__ == "__main__":
    run_tool(main)
