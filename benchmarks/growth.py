"""Growth: time per epoch and peak memory as the table grows in rows and in width.

Each case runs in its own process (``python -m benchmarks.growth CASE_JSON``) so its peak resident
memory is its own. Tables are synthetic Parquet (and one CSV, for the load-time comparison).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import synthetic
from benchmarks.common import CACHE, Result, Table, Target, compose_cfg, peak_rss_bytes, rss_bytes

BATCH = 256


def plan(quick: bool) -> list[dict[str, Any]]:
    """The cases: rows at one width, widths at one row count, the feed lever and CSV vs Parquet."""
    rows, width, base_rows, base_width = ([2_000, 10_000], [32, 64], 2_000, 64) if quick else \
        ([10_000, 100_000, 1_000_000], [64, 384, 1024], 100_000, 384)
    cases = [{"rows": n, "d": base_width, "fmt": "parquet", "feed": "auto", "series": "rows"} for n in rows]
    cases += [{"rows": base_rows, "d": d, "fmt": "parquet", "feed": "auto", "series": "width"} for d in width if d != base_width]
    cases += [{"rows": base_rows, "d": base_width, "fmt": "parquet", "feed": f, "series": "feed"} for f in ("arrays", "batches")]
    cases += [{"rows": base_rows, "d": base_width, "fmt": "csv", "feed": "auto", "series": "csv"}]
    return cases


def table_file(n: int, d: int, fmt: str, seed: int = 1) -> Path:
    """A synthetic table, written once; the test table has its own seed (a test file equal to the
    training file is refused)."""
    path = CACHE / "growth" / f"pairs-{n}x{d}-s{seed}.{fmt}"
    if not path.exists():
        tmp = path.with_name(path.name + ".partial" + path.suffix)
        tmp.unlink(missing_ok=True)
        synthetic.write(tmp, n, d, seed=seed)
        tmp.rename(path)
    return path


def case(spec: dict[str, Any]) -> dict[str, Any]:
    """One training run of ``epochs`` epochs on a generated table; times and memory."""
    import keras

    from siamese.data import load_dataset
    from siamese.engine import RunSpec, fit

    baseline = rss_bytes()
    cfg = compose_cfg("train", Path(spec["store"]), "data=csv", f"data.train={spec['train']}", f"data.test={spec['test']}",
                      "training.epochs=2", "training.verbose=0", f"training.feed={spec['feed']}",
                      f"training.batch_size={BATCH}", "training.early_stopping.patience=null")
    t0 = time.perf_counter()
    data = load_dataset(cfg.data, 0)
    load_s = time.perf_counter() - t0
    after_load = rss_bytes()
    times: list[float] = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.t)

    fit(RunSpec.of(cfg), data, [EpochTimes()])
    return {"load_s": load_s, "epoch_s": times, "baseline_rss": baseline, "after_load_rss": after_load,
            "peak_rss": peak_rss_bytes(), "train_rows": len(data.train), "val_rows": len(data.val)}


def run(quick: bool, store: Path) -> Result:
    results = []
    for spec in plan(quick):
        train = table_file(spec["rows"], spec["d"], spec["fmt"])
        small_test = table_file(2_000, spec["d"], "parquet", seed=2)
        payload = {**spec, "train": str(train), "test": str(small_test), "store": str(store)}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.growth", json.dumps(payload)],
                              capture_output=True, text=True, timeout=3000)
        if proc.returncode != 0:
            raise RuntimeError(f"growth case {spec} failed: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        feature_bytes = spec["rows"] * 2 * spec["d"] * 4
        results.append({**spec, **out, "feature_bytes": feature_bytes, "file_bytes": train.stat().st_size})
    table = Table(f"One training run (2 epochs, batch {BATCH}, default model) per table; peak = the process's peak RSS "
                  "including the Python/TensorFlow baseline",
                  ["series", "pairs", "d", "file", "feed", "load s", "s/epoch (2nd)", "feature MB", "peak RSS MB",
                   "peak / features", "(peak − baseline) / features"])
    for r in results:
        mb = 2**20
        table.rows.append([r["series"], r["rows"], r["d"], r["fmt"], r["feed"], round(r["load_s"], 2), round(r["epoch_s"][-1], 3),
                           round(r["feature_bytes"] / mb), round(r["peak_rss"] / mb), round(r["peak_rss"] / r["feature_bytes"], 2),
                           round((r["peak_rss"] - r["baseline_rss"]) / r["feature_bytes"], 2)])
    result = Result("growth", quick, "", [table], data={"cases": results})
    big = max((r for r in results if r["series"] == "rows"), key=lambda r: r["rows"])
    ratio = big["peak_rss"] / big["feature_bytes"]
    result.targets.append(Target(f"{big['rows']:,} pairs × {big['d']} a side train an epoch at peak memory < 2× the feature bytes",
                                 f"peak RSS {ratio:.2f}× the feature bytes", ratio < 2.0))
    return result


if __name__ == "__main__":
    print(json.dumps(case(json.loads(sys.argv[1]))))
