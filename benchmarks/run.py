"""Run the benchmarks, print their tables, write JSON; the full run also refreshes benchmarks/README.md.

    python -m benchmarks.run                 # make bench: full sizes (tens of minutes on 2 cores)
    python -m benchmarks.run --quick         # make bench-quick: every benchmark at a small size
    python -m benchmarks.run --only speed,growth --out DIR
    python -m benchmarks.run --render        # rewrite README tables from benchmarks/results/*.json
    python -m benchmarks.run --resume        # after a stop: the accuracy cells (data set × seed) it finished are kept
    python -m benchmarks.run --resume --merge ../other/experiments/bench/partial/accuracy.json
                                             # and those of runs over other SIAMESE_BENCH_DATASETS / _SEEDS
    python -m benchmarks.run --only accuracy --resume --finished-only
                                             # the tables from the cells finished so far, running none
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import accuracy, growth, parallel, question, speed, throughput
from benchmarks.common import CACHE, ROOT, Result, write

ORDER = ["accuracy", "question", "speed", "throughput", "parallel", "growth"]
TABLE_KEYS = {"title": str, "columns": list, "rows": list}
RESULT_KEYS = {"name": str, "quick": bool, "command": str, "tables": list, "targets": list, "notes": list,
               "data": dict, "seconds": float, "machine": dict}


def check(path: Path) -> dict[str, Any]:
    """Validate one result file's shape; returns it.

    Raises:
        ValueError: a key missing or of the wrong type, a row of the wrong length, an empty table.
    """
    out = json.loads(path.read_text())
    for key, kind in RESULT_KEYS.items():
        if not isinstance(out.get(key), kind):
            raise ValueError(f"{path.name}: '{key}' missing or not {kind.__name__}")
    if not out["tables"]:
        raise ValueError(f"{path.name}: no tables")
    for table in out["tables"]:
        for key, kind in TABLE_KEYS.items():
            if not isinstance(table.get(key), kind):
                raise ValueError(f"{path.name}: a table's '{key}' missing or not {kind.__name__}")
        if not table["rows"] or any(len(r) != len(table["columns"]) for r in table["rows"]):
            raise ValueError(f"{path.name}: table '{table['title']}' is empty or has rows of the wrong width")
    for target in out["targets"]:
        if set(target) != {"target", "value", "met"} or not isinstance(target["met"], bool):
            raise ValueError(f"{path.name}: malformed target {target}")
    return out


def refresh_readme(results: list[Result], readme: Path = ROOT / "README.md") -> None:
    """Replace each ``<!-- bench:NAME -->…<!-- /bench:NAME -->`` block of benchmarks/README.md. The footer's
    date is the result's own (a result written before results carried one keeps the date its block shows)."""
    text = readme.read_text()
    for r in results:
        pattern = rf"<!-- bench:{r.name} -->.*?<!-- /bench:{r.name} -->"
        shown = re.search(rf"<!-- bench:{r.name} -->.*, (\d{{4}}-\d\d-\d\d), [\d.]+ min_\n<!-- /bench:{r.name} -->", text, re.S)
        date = r.date or (shown.group(1) if shown else time.strftime("%Y-%m-%d"))
        block = f"<!-- bench:{r.name} -->\n{r.markdown()}\n\n_{r.command}, {date}, {r.seconds / 60:.1f} min_\n<!-- /bench:{r.name} -->"
        text = re.sub(pattern, lambda _: block, text, flags=re.S)
    readme.write_text(text)


def incomplete(cells: dict[str, Any]) -> str | None:
    """What a cell lacks, if any lacks a row of ``accuracy.METHODS`` (every row is written with its cell, so a
    cell short of one was not written by this benchmark): the tables compare rows of the same cells."""
    for key, rows in cells.items():
        have = {r.get("method") for r in rows if isinstance(r, dict)} if isinstance(rows, list) else set()
        missing = [m for m in accuracy.METHODS if m not in have]
        if missing:
            return f"cell {key} has no row for {', '.join(repr(m) for m in missing)}"
    return None


def merge_partials(paths: list[Path], quick: bool) -> str:
    """Add the finished accuracy cells of other runs' partial files to this checkout's, so ``--resume``
    keeps them all: one long run split over processes (each its own checkout, store and subset of
    ``SIAMESE_BENCH_DATASETS`` / ``SIAMESE_BENCH_SEEDS``) is summarised as one.

    Args:
        paths: partial files (``experiments/bench/partial/accuracy.json`` of the other checkouts).
        quick: whether this is a ``--quick`` run (its partial is another file).

    Returns:
        A line naming the cells added.

    Raises:
        ConfigError: a file unreadable, written by other code or settings (its fingerprint is not this
            code's), or holding a cell this checkout's partial already has.
    """
    from siamese.errors import ConfigError

    own = accuracy.partial_path(quick)
    fp = accuracy.fingerprint(accuracy.settings(quick))
    try:
        merged = json.loads(own.read_text()) if own.is_file() else {"data": {"cells": {}, "fingerprint": fp}}
        mine = merged["data"]["fingerprint"], dict(merged["data"]["cells"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{own} cannot be read ({type(exc).__name__}): delete it to merge into a fresh one") from None
    if mine[0] != fp:
        raise ConfigError(f"{own} was written by other code or settings: delete it, or merge in the checkout that wrote it")
    added = []
    for path in paths:
        try:
            data = json.loads(path.read_text())["data"]
            cells, their_fp = dict(data["cells"]), data["fingerprint"]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"--merge {path}: cannot be read ({type(exc).__name__}); give a partial accuracy.json "
                              "of an accuracy run") from None
        if their_fp != fp:
            raise ConfigError(f"--merge {path}: written by other code or settings (siamese/, conf/, the benchmark "
                              "or the Keras backend differ from this checkout's); run both with the same code")
        clash = sorted(set(cells) & set(merged["data"]["cells"]))
        if clash:
            where = f"{own} or an earlier --merge file" if added else str(own)
            raise ConfigError(f"--merge {path}: cell(s) {', '.join(clash)} are already in {where}; merge runs over "
                              "different data sets or seeds")
        short = incomplete(cells)
        if short:
            raise ConfigError(f"--merge {path}: {short}; give the partial file of a finished run")
        merged["data"]["cells"].update(cells)
        added += list(cells)
    before = own.read_text() if own.is_file() else None
    own.parent.mkdir(parents=True, exist_ok=True)
    tmp = own.with_suffix(".json.partial")
    tmp.write_text(json.dumps(merged, indent=1))
    os.replace(tmp, own)
    _, said = accuracy.finished_cells(quick)  # the cells checked as --resume checks them, before it trusts them
    if "cannot be read" in said:  # else --resume would start afresh and delete this checkout's finished cells
        own.write_text(before) if before is not None else own.unlink()
        raise ConfigError(f"--merge {' '.join(map(str, paths))}: a cell there is malformed; nothing merged")
    return f"merged: {len(added)} finished cell(s) added to {own} ({', '.join(added) or 'none'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark at a small size")
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {ORDER}")
    parser.add_argument("--out", type=Path, default=None, help="where JSON goes (default benchmarks/results[/quick])")
    parser.add_argument("--resume", action="store_true",
                        help="keep the accuracy cells (data set × seed) an interrupted run of the same code finished")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="PARTIAL",
                        help="with --resume: first add the finished accuracy cells of these partial files (runs of the "
                             "same code over other SIAMESE_BENCH_DATASETS / SIAMESE_BENCH_SEEDS, in other checkouts)")
    parser.add_argument("--finished-only", action="store_true",
                        help="with --resume: summarise the kept accuracy cells (and --merge's) and run none of the rest; "
                             "each row's seeds column says how many it has, a note names the cells not run")
    parser.add_argument("--render", action="store_true", help="only rewrite benchmarks/README.md from the saved JSON")
    args = parser.parse_args(argv)
    if args.render:  # it reads benchmarks/results/ and writes the README: another flag would be silently unused
        extra = [flag for flag, given in (("--quick", args.quick), ("--only", args.only != parser.get_default("only")),
                                          ("--out", args.out), ("--resume", args.resume), ("--merge", args.merge),
                                          ("--finished-only", args.finished_only)) if given]
        if extra:
            print(f"error: --render only rewrites benchmarks/README.md from benchmarks/results/*.json and takes no "
                  f"{', '.join(extra)}: run it alone", file=sys.stderr)
            return 2
        refresh_readme([Result.from_json(check(ROOT / "results" / f"{n}.json")) for n in ORDER
                        if (ROOT / "results" / f"{n}.json").exists()])
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; choose from {ORDER}", file=sys.stderr)
        return 2
    out = args.out or ROOT / "results" / ("quick" if args.quick else "")
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file: give a folder (each benchmark writes NAME.json there)", file=sys.stderr)
        return 2
    command = "make bench-quick" if args.quick else "make bench"
    if set(names) != set(ORDER):
        command = f"python -m benchmarks.run{' --quick' if args.quick else ''} --only {','.join(names)}"
    if args.finished_only:  # a summary of finished cells must not read as a run of them all
        command += " --resume --finished-only"
    if args.resume and "accuracy" not in names:
        print("error: --resume keeps the accuracy benchmark's finished cells: add accuracy to --only", file=sys.stderr)
        return 2
    if "question" in names and "accuracy" not in names and not (out / "accuracy.json").is_file():
        print(f"error: the question benchmark reads the accuracy benchmark's {out / 'accuracy.json'}, which is not "
              "there: run --only accuracy,question (or give the --out of a run that has it)", file=sys.stderr)
        return 2
    if args.merge and not args.resume:
        print("error: --merge adds finished cells to a resumed run: add --resume", file=sys.stderr)
        return 2
    if args.finished_only and not args.resume:
        print("error: --finished-only summarises the cells a resumed run keeps: add --resume", file=sys.stderr)
        return 2
    if args.finished_only and names != ["accuracy"]:
        print("error: --finished-only summarises accuracy cells only: give --only accuracy (the question benchmark "
              "reads its studies from the store of the checkout that ran them: --only accuracy,question --resume there)",
              file=sys.stderr)
        return 2
    from siamese.errors import ConfigError
    from siamese.stops import Stopped, install_stop_handlers

    if args.merge:
        try:
            said = merge_partials(args.merge, args.quick)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(said, flush=True)

    store = CACHE / ("store-quick" if args.quick else "store")
    kept: dict[str, Any] = {}
    if "accuracy" in names:
        try:
            interrupted = None if args.resume else accuracy.unfinished(args.quick)
            kept, said = accuracy.finished_cells(args.quick) if args.resume else ({}, "")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        short = incomplete(kept)  # a resumed run would summarise it too, after hours of new cells
        if short:
            print(f"error: {accuracy.partial_path(args.quick)}: {short}; delete that cell from it (or the file) and "
                  "run the cell again", file=sys.stderr)
            return 2
        if args.finished_only and not kept:
            print(f"error: --finished-only: {accuracy.partial_path(args.quick)} holds no finished cell of this run's data "
                  "sets and seeds (SIAMESE_BENCH_DATASETS / SIAMESE_BENCH_SEEDS): run cells first, or --merge the partial "
                  "files of the checkouts that ran them", file=sys.stderr)
            return 2
        if interrupted:  # hours of finished cells are not thrown away by a rerun that forgot --resume
            print(f"error: {interrupted}", file=sys.stderr)
            return 2
        if said:
            print(said, flush=True)
        if not kept:  # afresh: the cells and their studies go together (the question benchmark reads the studies)
            shutil.rmtree(store, ignore_errors=True)
            accuracy.partial_path(args.quick).unlink(missing_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    install_stop_handlers()  # SIGTERM too ends the open runs KILLED and says how to go on
    try:
        results = _run(names, args, out, store, kept, command)
    except KeyboardInterrupt as exc:
        partial = accuracy.partial_path(args.quick)
        if "accuracy" in names:
            print(f"stopped: the accuracy cells finished so far are in {partial}; the same command with --resume "
                  "goes on from there" if partial.is_file() else "stopped before any accuracy cell finished",
                  file=sys.stderr)
        return exc.code if isinstance(exc, Stopped) else 130
    if not args.quick and args.out is None:
        refresh_readme(results)
    missed = [f"{r.name}: {t.target}" for r in results for t in r.targets if not t.met]
    print(f"wrote {len(results)} result(s) to {out}; targets not met: {missed or 'none'}")
    return 0


def _run(names: list[str], args: argparse.Namespace, out: Path, store: Path, kept: dict[str, Any],
         command: str) -> list[Result]:
    """Each benchmark named, in ORDER: run, print, and write its JSON to ``out``."""
    from siamese import stops

    results = []
    for name in [n for n in ORDER if n in names]:
        stops.check()  # a stop swallowed inside the last benchmark
        t0 = time.perf_counter()
        print(f"== {name} ==", flush=True)
        if name == "question":
            result = question.run(args.quick, json.loads((out / "accuracy.json").read_text()))
        elif name == "accuracy" and args.finished_only:
            result = _finished_only(args.quick, store, kept)
        elif name == "accuracy":
            result = accuracy.run(args.quick, store, kept)
        else:
            result = {"speed": speed, "throughput": throughput, "parallel": parallel,
                      "growth": growth}[name].run(args.quick, store)
        result.seconds, result.command = time.perf_counter() - t0, command
        if name == "accuracy" and args.finished_only:  # the time its cells took, not this summary's
            result.seconds = sum(r["seconds"] for rows in result.data["cells"].values() for r in rows)
        result.date = time.strftime("%Y-%m-%d")
        check(write(result, out))
        results.append(result)
        print(result.markdown(), "\n", flush=True)
    return results


def _finished_only(quick: bool, store: Path, kept: dict[str, Any]) -> Result:
    """The accuracy tables from the cells already finished (``--resume --finished-only``), none run: a long
    run split over processes or sessions shows what it has, each row over the seeds it has."""
    s = accuracy.settings(quick)
    keys = [f"{d}/s{seed}" for seed in s["seeds"] for d in s["datasets"]]  # the order a full run has them in
    cells = {k: kept[k] for k in keys if k in kept}
    result = accuracy.summarise(quick, s, cells, store, accuracy.fingerprint(s), cells)
    missing = [k for k in keys if k not in kept]
    if missing:
        result.notes.append(f"--finished-only: {len(cells)} of {len(keys)} cells; not run: "
                            f"{', '.join(missing)} (a row's seeds column says how many seeds it has)")
    return result


if __name__ == "__main__":
    sys.exit(main())
