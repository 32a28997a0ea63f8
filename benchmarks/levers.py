"""Levers measured one at a time, side by side: one trial config (the base) trained on one data set with
each seed, then once more per seed for every value of every varied key (the other keys as in the base);
test accuracy and AUC (thresholds chosen on validation), and each lever's paired gain over the base.

    python -m benchmarks.levers --data mrpc-minilm --seeds 0,1,2 \\
        --vary model.input_noise=0.05,0.1 --vary optimizer.weight_decay=1e-4 model.distance=l2 …

Not part of ``make bench`` (a row costs ``len(seeds)`` training runs); its tables are quoted in
benchmarks/README.md with the command that produced them. It answers "does this key help the config
the study found?" before the key goes into ``conf/search/default.yaml``. Every row's config is composed
and checked before the first run trains. Values are split at commas (a list value cannot be varied);
runs go to a temporary store, so ``tracking.*`` overrides are refused, and ``seed``/``data`` (set by
``--seeds``/``--data``, which pair and label the rows) and a row given twice are refused too. A varied key the base sets
(say the winner's learning rate) keeps the base's value in the base row and takes each lever value in
its own rows. The base row's seconds include the process's first-run warm-up.
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

from hydra.errors import HydraException

from benchmarks.cli import run_tool
from benchmarks.common import compose_cfg, config_error, mean_sd

METRICS = ("val_auc", "test_auc", "test_accuracy")


def override_key(override: str) -> str:
    """The config key an override sets: ``++model.dropout=0.2`` → ``model.dropout``."""
    return override.split("=", 1)[0].lstrip("+~")


def _row(overrides: list[str], extra: list[str]) -> list[str]:
    """The base overrides with ``extra`` in place of the base's own value for each key ``extra`` sets
    (Hydra refuses one key given twice)."""
    replaced = {override_key(o) for o in extra}
    return [o for o in overrides if override_key(o) not in replaced] + extra


def listed(kind: type) -> Any:
    """An argparse type: comma-separated ``kind`` values (ints or floats), a usage error otherwise."""
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}s") from None
    return parse


def lever(text: str) -> tuple[str, list[str]]:
    """An argparse type: ``KEY=V1,V2,…`` as ``(KEY, [V1, V2, …])``."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values or any(not v for v in values.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r}: give a lever as KEY=VALUE[,VALUE…], e.g. model.input_noise=0.05,0.1")
    return key.lstrip("+"), values.split(",")


def measure(data: str, variants: list[tuple[str, list[str]]], seeds: list[int], overrides: list[str],
            store: Path) -> list[dict]:
    """One training run per (variant, seed), in this process, in the order given.

    Args:
        data: the data config (``data=…``).
        variants: ``(label, extra overrides)`` per row; ``[]`` is the base config itself.
        seeds: run seeds; each variant runs on every seed, so gains are paired by seed.
        overrides: the base trial config, as train overrides; a row's own value of a key replaces the base's.
        store: a folder for the runs' MLflow store.

    Returns:
        One dict per run: ``variant``, ``seed``, ``seconds`` (wall) and the metrics in ``METRICS``.

    Raises:
        UserError: a row's config a run would refuse (checked for every row before the first run).
        HydraException: an override Hydra cannot parse or apply.
    """
    from siamese.engine import RunSpec
    from siamese.train import train

    for _, extra in variants:  # a bad key or value fails here, before any run trains
        RunSpec.of(compose_cfg("train", store, f"data={data}", f"seed={seeds[0]}", *_row(overrides, extra)))
    rows = []
    for label, extra in variants:
        for seed in seeds:
            t0 = time.perf_counter()
            metrics = train(compose_cfg("train", store, f"data={data}", f"seed={seed}", "training.verbose=0",
                                        *_row(overrides, extra)))
            rows.append({"variant": label, "seed": seed, "seconds": time.perf_counter() - t0,
                         **{k: metrics[k] for k in METRICS}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(data: str, rows: list[dict], base: str | None, column: str = "lever") -> str:
    """The markdown table of ``rows`` (one line per variant, named in ``column``); with ``base``, each
    variant's paired gain in test accuracy over that variant (mean ± sd over the seeds both ran)."""
    head = f"| data | {column} | seeds | test accuracy | test AUC | val AUC | s per run |"
    if base is not None:
        head = head.replace(" s per run |", " Δ test accuracy (paired) | s per run |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    reference = {r["seed"]: r["test_accuracy"] for r in by_variant.get(base, [])}
    for label, mine in by_variant.items():
        col = lambda k: [r[k] for r in mine]  # noqa: E731
        cells = [data, label, str(len(mine)), mean_sd(col("test_accuracy")), mean_sd(col("test_auc")), mean_sd(col("val_auc"))]
        if base is not None:
            gains = [r["test_accuracy"] - reference[r["seed"]] for r in mine if r["seed"] in reference]
            cells.append("—" if label == base or not gains else
                         (f"{gains[0]:+.4f}" if len(gains) == 1 else f"{statistics.mean(gains):+.4f} ± {statistics.stdev(gains):.4f}"))
        cells.append(f"{statistics.mean(col('seconds')):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(data: str, variants: list[tuple[str, list[str]]], seeds: list[int], overrides: list[str],
        base: str | None, column: str = "lever") -> int:
    """Measure and print the table; a config error is one ``error:`` line and exit 2."""
    from siamese.errors import UserError

    try:
        with tempfile.TemporaryDirectory() as store:
            rows = measure(data, variants, seeds, overrides, Path(store))
    except (UserError, HydraException) as exc:  # HydraException: an override it cannot parse or apply
        print(config_error(exc, [*overrides, *(o for _, vs in variants for o in vs)]), file=sys.stderr)
        return 2
    print()
    print(table(data, rows, base, column))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seeds", default=[0, 1, 2], type=listed(int), help="e.g. 0,1,2")
    parser.add_argument("--vary", action="append", default=[], type=lever, metavar="KEY=V1[,V2…]",
                        help="a lever: each value replaces the base's value of KEY in a row of its own (repeatable)")
    parser.add_argument("overrides", nargs="*", help="the base trial config, as train overrides")
    args = parser.parse_intermixed_args(argv)  # overrides may come before, between and after --vary
    if not args.vary:
        parser.error("give at least one --vary KEY=V1[,V2…]")
    for key in [override_key(o) for o in args.overrides] + [key for key, _ in args.vary]:
        if key == "tracking" or key.startswith("tracking."):
            parser.error("runs go to a temporary store: leave tracking.* out (the table and the JSON lines are the result)")
        if flag := {"seed": "--seeds", "data": "--data"}.get(key):  # rows are paired by seed, labelled with --data
            parser.error(f"{key} is set by {flag}")
    rows = [f"{key}={value}" for key, values in args.vary for value in values]
    if twice := sorted({r for r in rows if rows.count(r) > 1}):
        parser.error(f"--vary {twice[0]} is given twice: each row once")
    variants = [("base", [])] + [(row, [row]) for row in rows]
    return run(args.data, variants, args.seeds, args.overrides, base="base")


if __name__ == "__main__":
    run_tool(main)
