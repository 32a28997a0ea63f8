"""The implied-pairs lever (``training.implied_pairs``) measured side by side: one trial config trained
on one data set with each ratio and each seed, test accuracy and AUC (thresholds chosen on validation).

    python -m benchmarks.implied --data mnist5k --ratios 0,4,10 --seeds 0,1 model.distance=l2 …

Not part of ``make bench`` (minutes per row on the shared data sets); its rows are quoted in
benchmarks/README.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra.errors import ConfigCompositionException

from benchmarks.common import compose_cfg, mean_sd


def _listed(kind: type) -> Any:
    """An argparse type: comma-separated ``kind`` values (floats ≥ 0 or ints), a usage error otherwise."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}s") from None
        if kind is float and any(not v >= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: ratios are numbers ≥ 0")
        return values
    return parse


def measure(data: str, ratios: list[float], seeds: list[int], overrides: list[str], store: Path) -> list[dict]:
    """One training run per (ratio, seed), in this process; each row's test metrics and seconds."""
    from siamese.train import train

    rows = []
    for ratio in ratios:
        for seed in seeds:
            t0 = time.perf_counter()
            metrics = train(compose_cfg("train", store, f"data={data}", f"seed={seed}", "training.verbose=0",
                                        f"training.implied_pairs={ratio}", *overrides))
            rows.append({"ratio": ratio, "seed": seed, "seconds": time.perf_counter() - t0,
                         **{k: metrics[k] for k in ("val_auc", "test_auc", "test_accuracy")}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--ratios", default=[0.0, 4.0], type=_listed(float), help="e.g. 0,4,10 (numbers ≥ 0)")
    parser.add_argument("--seeds", default=[0, 1], type=_listed(int), help="e.g. 0,1,2")
    parser.add_argument("overrides", nargs="*", help="the trial config, as train overrides")
    args = parser.parse_args(argv)
    if any(k.split("=", 1)[0].lstrip("+") == "training.implied_pairs" for k in args.overrides):
        parser.error("set the ratios with --ratios, not training.implied_pairs=")
    from siamese.errors import UserError

    try:
        with tempfile.TemporaryDirectory() as store:
            rows = measure(args.data, args.ratios, args.seeds, args.overrides, Path(store))
    except (UserError, ConfigCompositionException) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print("\n| data | training.implied_pairs | seeds | test accuracy | test AUC | val AUC | s per run |\n|---|---|---|---|---|---|---|")
    for ratio in dict.fromkeys(r["ratio"] for r in rows):
        mine = [r for r in rows if r["ratio"] == ratio]
        col = lambda k: [r[k] for r in mine]  # noqa: E731
        print(f"| {args.data} | {ratio:g} | {len(mine)} | {mean_sd(col('test_accuracy'))} | {mean_sd(col('test_auc'))} | "
              f"{mean_sd(col('val_auc'))} | {statistics.mean(col('seconds')):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
