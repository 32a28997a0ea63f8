"""``make bench-quick``: every benchmark at a small size, and the shape of what it writes."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from siamese.paths import project_root


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every benchmark, two Keras backends among them, on 2 cores
def test_bench_quick_runs_every_benchmark_and_writes_valid_json(tmp_path):
    from benchmarks.run import ORDER, check

    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)], cwd=project_root(),
                          capture_output=True, text=True, timeout=1700,
                          env={**os.environ, "SIAMESE_BENCH_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {name: check(out / f"{name}.json") for name in ORDER}
    assert all(r["quick"] for r in results.values())
    speed = results["speed"]["data"]["summary"]
    assert all(v["pairs_per_s"] > 0 and 0.0 <= v["val_auc"] <= 1.0 for v in speed.values())
    growth = results["growth"]["data"]["cases"]
    assert {c["series"] for c in growth} == {"rows", "width", "feed", "csv"}
    assert all(c["peak_rss"] >= c["after_load_rss"] > 0 for c in growth)
    accuracy = results["accuracy"]["data"]["summary"]["digits"]
    assert accuracy["cosine similarity"]["test_accuracy"] > accuracy["majority class"]["test_accuracy"]
    assert results["question"]["data"]["trials"] == 4
    # the study's row names the budget this run had: 2 trials under --quick, not the full size's 20
    assert {r[1] for r in results["accuracy"]["tables"][0]["rows"]} >= {"default study (2 trials) + confirmation"}
    # the same 4 trials by one process, 1 worker and 2 workers; on JAX by 1 and 2 workers
    parallel = results["parallel"]["data"]
    variants = ("tensorflow-0", "tensorflow-1", "tensorflow-2", "jax-1", "jax-2")
    assert [parallel[v]["trials"] for v in variants] == [4] * 5
    assert all(parallel[v]["time_to_best_s"] <= parallel[v]["wall_s"] for v in variants)
    # the search phase lies inside the process's life; the CPU counted is that of the study's processes
    assert all(0 < parallel[v]["search_s"] < parallel[v]["wall_s"] for v in variants)
    assert all(parallel[v]["cpu_s"] > parallel[v]["trial_seconds"] * 0.5 for v in variants)
    waits = results["throughput"]["data"]["figure_wait_s"]
    assert waits["background"] < waits["inline"] / 10  # handing figures to the worker beats drawing them
    # The printed verdict is the JSON's: each target's line says met / NOT met as its JSON does, and
    # the closing line lists exactly the targets the JSON marks not met.
    targets = [(name, t) for name in ORDER for t in results[name]["targets"]]
    assert targets, "no benchmark reported a target"
    for _, t in targets:
        assert f"- target: {t['target']}: **{t['value']}** ({'met' if t['met'] else 'NOT met'})" in proc.stdout, t
    missed = [f"{name}: {t['target']}" for name, t in targets if not t["met"]]
    assert f"targets not met: {missed or 'none'}" in proc.stdout
    with pytest.raises(ValueError, match="rows of the wrong width"):
        bad = json.loads((out / "speed.json").read_text())
        bad["tables"][0]["rows"][0].append("extra")
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        check(tmp_path / "bad.json")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_accuracy_bench_cut_short_keeps_its_finished_cells_and_resume_runs_only_the_rest(tmp_path):
    """Ctrl-C in the second cell's study (data set × seed) of the accuracy benchmark: no result file, the
    first cell kept; a rerun without ``--resume`` refuses to discard it; ``--resume`` runs only the second
    cell, reports the first one's figures unchanged, and the question benchmark counts each study once
    (not the attempt the stop cut short, whose parent run is still in the store)."""
    import signal
    import time

    from benchmarks.run import check

    cache, out = tmp_path / "cache", tmp_path / "results"
    env = {**os.environ, "SIAMESE_BENCH_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "accuracy,question", "--out", str(out)]
    partial = cache / "partial-quick" / "accuracy.json"
    second_study = cache / "studies" / "accuracy-digits-s1" / "study.json"  # written once its parent run exists
    log = (tmp_path / "first.log").open("w")  # a file, not a pipe nobody reads while it runs
    proc = subprocess.Popen(argv, cwd=project_root(), env=env, stdout=log, stderr=subprocess.STDOUT)
    while proc.poll() is None and not second_study.exists():
        time.sleep(0.2)
    assert proc.poll() is None, "the benchmark ended before the second cell's study began"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130
    assert "--resume goes on from there" in (tmp_path / "first.log").read_text()
    assert not (out / "accuracy.json").exists() and not (out / "question.json").exists()  # nothing half-written
    first = json.loads(partial.read_text())["data"]["cells"]
    assert list(first) == ["digits/s0"]

    plain = subprocess.run(argv, cwd=project_root(), env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and partial.is_file()
    assert plain.stderr.strip().splitlines()[-1].startswith(f"error: {partial} holds 1 finished cell(s)")
    assert "add --resume" in plain.stderr

    proc = subprocess.run([*argv, "--resume"], cwd=project_root(), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming: 1 finished cell(s) kept" in proc.stdout and "digits/s0 kept from an earlier run" in proc.stdout
    assert "digits/s1 done" in proc.stdout and "digits/s0 done" not in proc.stdout
    result = check(out / "accuracy.json")
    assert list(result["data"]["cells"]) == ["digits/s0", "digits/s1"]
    assert result["data"]["cells"]["digits/s0"] == first["digits/s0"]  # kept as it was, not run again
    assert result["tables"][0]["rows"][0][2] == 2  # every row over both seeds
    assert result["notes"] == ["1 of 2 cells (data set × seed: digits/s0) kept from an earlier run of the same code "
                               "and settings (--resume); their wall seconds are that run's"]
    question = check(out / "question.json")
    assert question["data"]["trials"] == 4  # 2 trials in each of 2 studies
    assert "(4 trials of 2 default studies)" in question["tables"][0]["title"]


def test_accuracy_bench_resume_reads_only_a_partial_of_this_code_and_size(tmp_path, monkeypatch):
    """What ``--resume`` keeps: nothing from a partial written under other settings (the full size vs
    --quick), an unreadable one, or one of other code; the cells of this run's data sets otherwise."""
    from benchmarks import accuracy

    monkeypatch.setattr(accuracy, "CACHE", tmp_path)
    s = accuracy.settings(quick=True)
    cell = [{"method": "majority class", "seconds": 1.0, "metrics": {"test_accuracy": 0.5}}]
    saved = {"cells": {"digits/s0": cell, "mnist5k/s0": cell}, "fingerprint": accuracy.fingerprint(s)}
    path = accuracy.partial_path(quick=True)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"data": saved}))
    kept, said = accuracy.finished_cells(quick=True)
    assert kept == {"digits/s0": cell} and said.startswith("resuming: 1 finished cell(s)")  # mnist5k: not this run's
    # A run over a subset of the seeds has the same fingerprint (cells merge by key) and keeps only its own.
    monkeypatch.setenv("SIAMESE_BENCH_SEEDS", "1")
    assert accuracy.settings(quick=True)["seeds"] == [1] and accuracy.fingerprint(accuracy.settings(quick=True)) == saved["fingerprint"]
    assert accuracy.finished_cells(quick=True)[0] == {}
    monkeypatch.setenv("SIAMESE_BENCH_SEEDS", "0, 1")
    assert accuracy.finished_cells(quick=True)[0] == {"digits/s0": cell}
    monkeypatch.delenv("SIAMESE_BENCH_SEEDS")
    assert accuracy.unfinished(quick=True).startswith(f"{path} holds 1 finished cell(s)")
    assert accuracy.finished_cells(quick=False) == ({}, f"nothing to resume: no {accuracy.partial_path(False)}; starting afresh")
    path.write_text(json.dumps({"data": {**saved, "fingerprint": "0" * 16}}))  # written by other code
    assert accuracy.finished_cells(quick=True)[0] == {} and accuracy.unfinished(quick=True) is None
    bad_cells = [{"digits/s0": []}, {"digits": cell}, {"digits/s0": [{"method": "x"}]}, {"digits/s0": "rows"},
                 {"digits/s0": [{**cell[0], "metrics": {"test_accuracy": "high"}}]}, {"digits/s0": [None]}]
    for damaged in ('{"data": {"cells"', "[]", "", *(json.dumps({"data": {**saved, "cells": c}}) for c in bad_cells)):
        path.write_text(damaged)
        kept, said = accuracy.finished_cells(quick=True)
        assert kept == {} and "cannot be read" in said


def test_merge_adds_the_finished_cells_of_runs_over_other_subsets(tmp_path, monkeypatch, capsys):
    """``--resume --merge PARTIAL…``: one accuracy run split over checkouts (SIAMESE_BENCH_DATASETS /
    SIAMESE_BENCH_SEEDS) is summarised as one; a file of other code, a malformed one, or one repeating a cell
    is refused with one line and this checkout's partial left as it was."""
    from benchmarks import accuracy
    from benchmarks.run import main, merge_partials
    from siamese.errors import ConfigError

    monkeypatch.setattr(accuracy, "CACHE", tmp_path / "here")
    fp = accuracy.fingerprint(accuracy.settings(quick=True))
    cell = [{"method": m, "seconds": 1.0, "metrics": {"test_accuracy": 0.5}} for m in accuracy.METHODS]
    own = accuracy.partial_path(quick=True)
    own.parent.mkdir(parents=True)
    own.write_text(json.dumps({"data": {"cells": {"digits/s0": cell}, "fingerprint": fp, "store": "kept"}}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"data": {"cells": {"digits/s1": cell}, "fingerprint": fp}}))
    assert merge_partials([other], quick=True) == f"merged: 1 finished cell(s) added to {own} (digits/s1)"
    assert accuracy.finished_cells(quick=True)[0] == {"digits/s0": cell, "digits/s1": cell}
    assert json.loads(own.read_text())["data"]["store"] == "kept"  # the rest of this checkout's partial untouched
    merged = own.read_text()
    bad = tmp_path / "bad.json"
    for text, says in [(json.dumps({"data": {"cells": {"digits/s1": cell}, "fingerprint": fp}}), "already in"),
                       (json.dumps({"data": {"cells": {"digits/s2": cell}, "fingerprint": "0" * 16}}), "other code"),
                       ('{"data": {', "cannot be read (JSONDecodeError)"),
                       (json.dumps({"data": {"cells": {"digits/s2": [{**r, "metrics": {"test_accuracy": "high"}} for r in cell]},
                                             "fingerprint": fp}}), "malformed"),
                       (json.dumps({"data": {"cells": {"digits/s2": cell[:3]}, "fingerprint": fp}}),
                        "cell digits/s2 has no row for \"question's model\""),
                       (json.dumps({"data": {"cells": {"digits/s2": [{"method": 1}]}, "fingerprint": fp}}), "has no row for")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(says)):
            merge_partials([bad], quick=True)
        assert own.read_text() == merged
    with pytest.raises(ConfigError, match="cannot be read"):
        merge_partials([tmp_path / "absent.json"], quick=True)
    assert main(["--quick", "--only", "accuracy", "--merge", str(other), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == "error: --merge adds finished cells to a resumed run: add --resume"
    own.write_text(json.dumps({"data": {"cells": {}, "fingerprint": "0" * 16}}))
    with pytest.raises(ConfigError, match="written by other code"):
        merge_partials([other], quick=True)
    own.unlink()  # no partial here yet: the merged cells start one
    merge_partials([other], quick=True)
    assert accuracy.finished_cells(quick=True)[0] == {"digits/s1": cell}


def test_finished_only_summarises_the_kept_cells_and_runs_none(tmp_path, monkeypatch, capsys):
    """``--resume --finished-only``: the tables from the finished cells (this checkout's and --merge's), each
    row over the seeds it has, a note naming the cells not run, and the cells' own time; nothing trains."""
    from benchmarks import accuracy
    from benchmarks.run import main

    monkeypatch.setattr(accuracy, "CACHE", tmp_path / "here")
    monkeypatch.setattr(accuracy, "run", lambda *a: pytest.fail("--finished-only ran a cell"))
    fp = accuracy.fingerprint(accuracy.settings(quick=True))

    def cell(acc: float) -> list[dict]:
        metrics = {"test_accuracy": acc, "test_auc": acc, "test_f1": acc, "val_auc": acc,
                   "confirm_val_auc_mean": acc, "confirm_val_auc_sd": 0.01}
        return [{"method": m, "seconds": 10.0, "metrics": metrics} for m in accuracy.METHODS]

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"data": {"cells": {"digits/s1": cell(0.8)}, "fingerprint": fp}}))
    out = tmp_path / "out"
    assert main(["--quick", "--only", "accuracy", "--resume", "--finished-only", "--out", str(out)]) == 2
    assert "holds no finished cell of this run's data sets and seeds" in capsys.readouterr().err
    assert main(["--quick", "--only", "accuracy", "--finished-only", "--out", str(out)]) == 2
    assert "add --resume" in capsys.readouterr().err
    assert main(["--quick", "--only", "accuracy", "--resume", "--finished-only", "--merge", str(other),
                 "--out", str(out)]) == 0
    result = json.loads((out / "accuracy.json").read_text())
    rows = result["tables"][0]["rows"]
    assert [r[1] for r in rows][:3] == accuracy.METHODS[:3] and all(r[2] == 1 for r in rows)  # one seed each
    assert rows[0][3] == "0.8000"  # one seed: no sd
    assert result["notes"][-1] == ("--finished-only: 1 of 2 cells; not run: digits/s0 (a row's seeds column says "
                                   "how many seeds it has)")
    assert result["seconds"] == 10.0 * len(accuracy.METHODS)
    assert list(result["data"]["cells"]) == ["digits/s1"]
    assert result["command"] == "python -m benchmarks.run --quick --only accuracy --resume --finished-only"
    assert main(["--quick", "--only", "accuracy,question", "--resume", "--finished-only", "--out", str(out)]) == 2
    assert "give --only accuracy" in capsys.readouterr().err
    own = accuracy.partial_path(quick=True)  # a cell short of a row (not written by this benchmark): refused
    saved = json.loads(own.read_text())
    saved["data"]["cells"]["digits/s0"] = cell(0.9)[:-1]
    own.write_text(json.dumps(saved))
    (out / "accuracy.json").unlink()
    assert main(["--quick", "--only", "accuracy", "--resume", "--finished-only", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cell digits/s0 has no row for 'default study" in err[0], err
    assert not (out / "accuracy.json").exists()
    assert main(["--quick", "--only", "accuracy", "--resume", "--out", str(out)]) == 2  # nor resumed to fail later
    assert "cell digits/s0 has no row for 'default study" in capsys.readouterr().err


@pytest.mark.parametrize("argv, env, says", [
    (["--quick", "--only", "accuracy"], "nosuch", "SIAMESE_BENCH_DATASETS=nosuch: ['nosuch'] not among"),
    (["--quick", "--only", "accuracy"], "mnist5k", "--quick runs digits only"),
    (["--only", "speed", "--resume"], "", "add accuracy to --only"),
    (["--only", "question"], "", "run --only accuracy,question"),
    (["--quick", "--only", "accuracy", "--resume"], "nosuch", "SIAMESE_BENCH_DATASETS=nosuch: ['nosuch'] not among"),
    (["--quick", "--only", "accuracy"], "seeds=2", "SIAMESE_BENCH_SEEDS=2: give a comma-separated subset of this run's seeds [0, 1]"),
    (["--quick", "--only", "accuracy"], "seeds=one", "SIAMESE_BENCH_SEEDS=one: give a comma-separated subset"),
    (["--quick", "--only", "accuracy", "--resume"], "seeds=,", "SIAMESE_BENCH_SEEDS=,: give a comma-separated subset"),
])
def test_bench_bad_arguments_are_one_error_line_before_anything_runs(tmp_path, monkeypatch, capsys, argv, env, says):
    from benchmarks.run import main

    seeds = env.startswith("seeds=")
    monkeypatch.setenv("SIAMESE_BENCH_SEEDS", env.removeprefix("seeds=") if seeds else "")
    monkeypatch.setenv("SIAMESE_BENCH_DATASETS", "" if seeds else env)
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not (tmp_path / "out").exists()


def test_bench_out_naming_a_file_and_render_with_other_flags_are_one_error_line(tmp_path, capsys):
    """``--out`` must name a folder (a file there was a FileExistsError traceback), and ``--render`` takes no
    other flag (it reads benchmarks/results/ only: ``--render --out DIR`` silently rendered the committed JSON)."""
    from benchmarks.run import main

    taken = tmp_path / "taken"
    taken.write_text("mine")
    readme = (project_root() / "benchmarks" / "README.md").read_text()
    for argv, says in ([["--only", "speed", "--out", str(taken)], f"--out {taken} is a file: give a folder"],
                       [["--render", "--out", str(tmp_path)], "takes no --out: run it alone"],
                       [["--render", "--quick", "--only", "speed"], "takes no --quick, --only: run it alone"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert taken.read_text() == "mine"
    assert (project_root() / "benchmarks" / "README.md").read_text() == readme


def test_render_keeps_each_results_own_date(tmp_path):
    """``--render`` rewrites a block from saved JSON: the footer's date is the result's, and a result saved
    before results carried a date keeps the date its block showed (it was stamped with today's)."""
    from benchmarks.common import Result, Table
    from benchmarks.run import refresh_readme

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:speed -->\nold\n\n_make bench, 2026-01-02, 3.0 min_\n<!-- /bench:speed -->\n"
                      "<!-- bench:growth -->\nold\n\n_make bench, 2026-01-02, 1.0 min_\n<!-- /bench:growth -->\nend\n")
    table = Table("t", ["a"], [[1]])
    refresh_readme([Result("speed", False, "make bench", [table], seconds=60.0),
                    Result("growth", False, "make bench", [table], seconds=120.0, date="2026-03-04")], readme)
    text = readme.read_text()
    assert "_make bench, 2026-01-02, 1.0 min_\n<!-- /bench:speed -->" in text
    assert "_make bench, 2026-03-04, 2.0 min_\n<!-- /bench:growth -->" in text
    assert text.startswith("intro\n") and text.endswith("end\n") and "old" not in text


def test_bench_rejects_unknown_names(capsys):
    from benchmarks.run import main

    assert main(["--only", "speed,nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_implied_pairs_lever_prints_one_row_per_ratio(tmp_path, digits_cache, capsys):
    """``python -m benchmarks.implied``: each ratio trained on each seed, one table row per ratio."""
    from benchmarks import implied

    assert implied.main(["--data", "digits", "--ratios", "0,1", "--seeds", "0", f"++data.cache_dir={digits_cache}",
                         "++data.n_train=300", "++data.n_test=100", "training.epochs=1"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| digits |")]
    assert [r.split(" | ")[1] for r in rows] == ["0", "1"]
    assert all(0.0 <= float(r.split(" | ")[3]) <= 1.0 for r in rows)  # test accuracy, one seed: no sd


def test_levers_row_per_value_with_its_gain_paired_by_seed(digits_cache, capsys):
    """``python -m benchmarks.levers``: the base once per seed, one row per varied value, and each row's
    Δ is the mean of its per-seed test-accuracy differences from the base (the JSON lines it printed). A
    varied key the base sets keeps the base's value in the base row: the row giving it the same value
    trains the same model (runs are deterministic), so the base did not fall back to the config default."""
    import statistics

    from benchmarks import levers

    assert levers.main(["--data", "digits", "--seeds", "0,1", "--vary", "model.dropout=0.0,0.4", "--vary", "model.depth=1",
                        f"++data.cache_dir={digits_cache}", "++data.n_train=300", "++data.n_test=100",
                        "training.epochs=2", "model.dropout=0.4"]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = [json.loads(ln) for ln in out if ln.startswith("{")]
    assert [(r["variant"], r["seed"]) for r in runs] == [
        (v, s) for v in ("base", "model.dropout=0.0", "model.dropout=0.4", "model.depth=1") for s in (0, 1)]
    rows = {ln.split(" | ")[1]: ln.split(" | ") for ln in out if ln.startswith("| digits |")}
    assert list(rows) == ["base", "model.dropout=0.0", "model.dropout=0.4", "model.depth=1"]
    assert rows["base"][6] == "—"
    acc = {(r["variant"], r["seed"]): r["test_accuracy"] for r in runs}
    for variant in ("model.dropout=0.0", "model.depth=1"):
        gains = [acc[variant, s] - acc["base", s] for s in (0, 1)]
        assert rows[variant][6] == f"{statistics.mean(gains):+.4f} ± {statistics.stdev(gains):.4f}"
    assert [acc["model.dropout=0.4", s] for s in (0, 1)] == [acc["base", s] for s in (0, 1)]
    assert rows["model.dropout=0.4"][6] == "+0.0000 ± 0.0000"


@pytest.mark.parametrize("argv, says", [
    (["--vary", "model.dropout"], "KEY=VALUE"),
    (["--vary", "model.dropout=0.1,"], "KEY=VALUE"),
    ([], "at least one --vary"),
    (["--vary", "tracking.uri=/tmp/x"], "leave tracking.* out"),
    (["--vary", "model.dropout=0.1", "tracking=local"], "leave tracking.* out"),
    (["--vary", "model.dropout=0.1", "seed=3"], "seed is set by --seeds"),
    (["--vary", "data=mnist5k"], "data is set by --data"),
    (["--vary", "model.dropout=0.0,0.0"], "model.dropout=0.0 is given twice"),
    (["--vary", "model.dropout=0.1", "--vary", "model.dropout=0.1"], "model.dropout=0.1 is given twice"),
    (["training.epochs=1", "--vary", "model.dropout=0.1", "tracking.uri=/tmp/x"], "leave tracking.* out"),
])
def test_levers_bad_arguments_are_one_usage_line(argv, says, capsys):
    from benchmarks import levers

    with pytest.raises(SystemExit) as exit_:
        levers.main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_levers_a_bad_value_is_one_error_line(digits_cache, capsys):
    from benchmarks import levers

    assert levers.main(["--data", "digits", "--seeds", "0", "--vary", "model.dropout=lots",
                        f"++data.cache_dir={digits_cache}", "++data.n_train=300", "++data.n_test=100",
                        "training.epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "model.dropout" in err[0]


def test_threshold_rules_on_a_trained_model_match_what_the_run_logged(tmp_path, digits_cache, capsys):
    """``python -m benchmarks.thresholds``: on a model trained here, the bagged rule's test accuracy is the
    run's own logged test_accuracy (runs use that rule), and no rule beats the oracle. The model standardises
    its inputs: the tool must score the pairs as read through the model's own preprocessing, once."""
    from benchmarks import thresholds
    from benchmarks.common import compose_cfg
    from siamese.train import train

    data = [f"++data.cache_dir={digits_cache}", "++data.n_train=300", "++data.n_test=100"]
    # as a study that searched data.preprocess: the tool is not told this model's choice, its bundle is
    metrics = train(compose_cfg("train", tmp_path, "seed=0", "training.epochs=2", "training.verbose=0", *data,
                                "data.preprocess=standardize"))
    [model] = [p.parent for p in (tmp_path / "artifacts").glob("*/artifacts/model/bundle.json")]
    capsys.readouterr()
    assert thresholds.main(["--data", "digits", "--seed", "0", *[f"--set={o}" for o in data], str(model)]) == 0
    out = capsys.readouterr().out
    row = dict(kv.split("=", 1) for kv in out.splitlines()[0].split(" "))
    assert float(row["bagged"]) == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert all(float(row[rule]) <= float(row["oracle"]) for rule in thresholds.RULES)
    assert [ln.split(" | ")[1] for ln in out.splitlines() if ln.startswith("| digits |")] == [*thresholds.RULES, "oracle"]


def test_threshold_rules_refuse_a_folder_without_a_model(tmp_path, capsys):
    from benchmarks import thresholds

    assert thresholds.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(tmp_path) in err and "bundle.json" in err
    (tmp_path / "bundle.json").write_text("{}")  # a model folder whose model file is missing
    assert thresholds.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no model.keras" in err and len(err.splitlines()) == 1


def test_levers_check_every_row_before_any_run_trains(digits_cache, capsys):
    """A bad varied key or value is found before the base trains: nothing is printed as a run."""
    from benchmarks import levers

    for vary, says in (("model.nosuch=1", "model.nosuch"), ("model.input_dropout=1.5", "model.input_dropout=1.5"),
                       ("model.input_dropout=abc", "model.input_dropout")):
        assert levers.main(["--data", "digits", "--seeds", "0", "--vary", vary, f"++data.cache_dir={digits_cache}",
                            "++data.n_train=300", "++data.n_test=100", "training.epochs=1"]) == 2
        out, err = capsys.readouterr()
        assert '"variant"' not in out
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err


def test_levers_an_override_hydra_cannot_parse_is_one_error_line(capsys):
    from benchmarks import levers

    assert levers.main(["--data", "digits", "--seeds", "0", "--vary", "model.input_dropout=[0.1", "training.epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot parse the override 'model.input_dropout=[0.1'"), err


@pytest.mark.parametrize("bad, says", [
    ("data.n_train=[", "cannot parse the override 'data.n_train=['"),
    ("nokey", "cannot parse the override 'nokey'"),
    ("data=nosuch", "available options in 'data': csv, digits"),
    ("model.distnce=l1", "did you mean 'model.distance'?"),
    ("data.val_fraction=abc", "data.val_fraction='abc' must be a number in (0, 1)"),
    ("seed=1", "seed is set by --seed"),
])
def test_model_tools_name_the_override_hydra_refuses(tmp_path, capsys, bad, says):
    """``benchmarks.thresholds`` and ``benchmarks.ensemble``: a --set Hydra cannot parse or apply is one
    line naming it, with Hydra's options or the closest key, exit 2, before any model is read."""
    from benchmarks import ensemble, thresholds

    for name in ("00-s1", "00-s2"):  # folders shaped like models: the config is composed before they are read
        (tmp_path / name).mkdir()
        for f in thresholds.MODEL_FILES:
            (tmp_path / name / f).write_text("")
    for tool, target in ((thresholds, [str(tmp_path / "00-s1")]), (ensemble, [str(tmp_path)])):
        assert tool.main(["--data", "digits", f"--set={bad}", *target]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], (tool.__name__, err)


def test_threshold_rules_refuse_a_model_of_another_width(tmp_path, digits_cache, capsys):
    """A digits model (64 a side) given as a model of a 4-wide table: one line naming the folder."""
    from benchmarks import thresholds
    from benchmarks.common import compose_cfg
    from siamese.train import train

    data = [f"++data.cache_dir={digits_cache}", "++data.n_train=300", "++data.n_test=100"]
    train(compose_cfg("train", tmp_path, "seed=0", "training.epochs=1", "training.verbose=0", *data))
    [model] = [p.parent for p in (tmp_path / "artifacts").glob("*/artifacts/model/bundle.json")]
    rng = np.random.default_rng(0)
    for name in ("t.csv", "t2.csv"):
        pd.DataFrame(rng.normal(size=(120, 8)), columns=[f"v{i}" for i in range(8)]).assign(
            **{"class": [0, 1] * 60}).to_csv(tmp_path / name, index=False)
    capsys.readouterr()
    assert thresholds.main(["--data", "csv", f"--set=data.train={tmp_path / 't.csv'}", f"--set=data.test={tmp_path / 't2.csv'}",
                            str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[1].startswith(f"error: {model} takes 64 values a side, data=csv has 4")
    assert err[0].startswith(f"warning: {model} is in no study folder (no study.json")  # a run's model: split unchecked


@pytest.mark.slow
def test_seed_ensemble_table_keeps_the_studys_seed_and_scores_the_ensemble(tmp_path, digits_cache, capsys):
    """``python -m benchmarks.ensemble`` on a small study's confirmation: one row per confirmed trial; the
    winner's kept seed scores what the study logged for its kept model (same split, seed and cut rule)."""
    from benchmarks import ensemble
    from benchmarks.common import compose_cfg
    from siamese.tune import tune

    data = [f"++data.cache_dir={digits_cache}", "++data.n_train=400", "++data.n_test=200"]
    metrics = tune(compose_cfg("tune", tmp_path, "seed=0", "training.epochs=2", "training.verbose=0", "tuner.max_trials=2",
                               "confirm.top_k=2", "confirm.seeds=2", f"study_dir={tmp_path / 'study'}", *data))
    capsys.readouterr()
    argv = ["--data", "digits", "--seed", "0", *[f"--set={o}" for o in data], str(tmp_path / "study" / "confirm")]
    assert ensemble.main(argv) == 0
    rows = [ln.strip("| ").split(" | ") for ln in capsys.readouterr().out.splitlines() if ln.startswith("| digits |")]
    assert len(rows) == 2 and all(r[2] == "2" for r in rows)  # two trials, two seeds each
    [winner] = [r for r in rows if "(winner)" in r[1]]
    assert float(winner[4]) == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert float(winner[3]) == pytest.approx(metrics["confirm_val_auc_mean"], abs=1e-4)
    for r in rows:
        assert float(r[4]) <= float(r[8])  # no cut chosen on validation beats the best cut for test
        assert 0.5 <= float(r[6]) <= 1.0 and 0.5 <= float(r[7]) <= 1.0
    # the study's own record (study.json) says which split its models must be scored on
    for wrong, says in ((["--seed", "1"], "ran with seed=0"), (["--set=data.val_fraction=0.3"], "ran with data.val_fraction=0.2")):
        assert ensemble.main([*argv, *wrong]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0] and "study.json" in err[0], err


def test_seed_ensemble_refuses_a_folder_without_seed_models(tmp_path, capsys):
    from benchmarks import ensemble

    assert ensemble.main(["--data", "digits", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path) in err and "confirm/" in err and len(err.splitlines()) == 1


def test_ceiling_chooses_each_setting_on_validation_and_scores_the_refit_at_the_split_fits_cut(digits_cache, monkeypatch):
    """``benchmarks.ceiling``: the setting kept is the grid's best by validation AUC, and the refit (fit on
    training + validation) is scored on test at the cut the split fit chose on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from benchmarks import ceiling
    from benchmarks.common import compose_cfg
    from siamese.baselines import pair_features
    from siamese.data import load_dataset
    from siamese.metrics import choose_thresholds

    grid = [{"C": 1e-4}, {"C": 1.0}]
    monkeypatch.setattr(ceiling, "learners", lambda: {"logistic": (grid, lambda seed, **p: LogisticRegression(max_iter=3000, **p))})
    cfg = compose_cfg("train", digits_cache / "store", "data=digits", "seed=0", f"++data.cache_dir={digits_cache}",
                      "++data.n_train=400", "++data.n_test=150")
    data = load_dataset(cfg.data, 0)
    [row] = ceiling.sklearn_rows(data, 0)

    x = {k: pair_features(getattr(data, k), ceiling.FEATURES) for k in ("train", "val", "test")}
    scaler = StandardScaler().fit(x["train"])
    fits = {g["C"]: LogisticRegression(max_iter=3000, C=g["C"]).fit(scaler.transform(x["train"]), data.train.y) for g in grid}
    val_auc = {c: roc_auc_score(data.val.y, m.decision_function(scaler.transform(x["val"]))) for c, m in fits.items()}
    best = max(val_auc, key=val_auc.get)
    assert row["setting"] == {"C": best} and row["val_auc"] == pytest.approx(val_auc[best])
    cut = choose_thresholds(data.val.y, fits[best].decision_function(scaler.transform(x["val"])))["threshold"]
    whole = np.vstack([x["train"], x["val"]])
    refit_scaler = StandardScaler().fit(whole)
    refit = LogisticRegression(max_iter=3000, C=best).fit(refit_scaler.transform(whole), np.concatenate([data.train.y, data.val.y]))
    s_test = refit.decision_function(refit_scaler.transform(x["test"]))
    assert row["refit_test_accuracy"] == pytest.approx(np.mean((s_test >= cut) == (data.test.y > 0.5)))
    assert row["refit_test_auc"] == pytest.approx(roc_auc_score(data.test.y, s_test))


@pytest.mark.parametrize("stopping, kept", [
    ([], "best"),  # early stopping restores the best epoch's weights: the refit trains that many epochs
    (["training.early_stopping.monitor=val_loss"], "best"),
    (["training.early_stopping.restore_best=false"], "all"),  # the split fit kept its last epoch's weights
    (["training.early_stopping.patience=null"], "all"),
])
def test_ceiling_refits_a_trial_config_for_the_epochs_whose_weights_the_split_fit_kept(digits_cache, capsys, monkeypatch,
                                                                                         stopping, kept):
    from benchmarks import ceiling
    from siamese import engine

    fits = []
    real_fit = engine.fit
    monkeypatch.setattr(engine, "fit", lambda spec, data, callbacks=None: fits.append(real_fit(spec, data, callbacks)) or fits[-1])
    assert ceiling.main(["--data", "digits", "--seeds", "0", "--no-sklearn", f"++data.cache_dir={digits_cache}",
                         "++data.n_train=300", "++data.n_test=100", "training.epochs=6",
                         "training.early_stopping.patience=1", "optimizer.learning_rate=0.01", *stopping]) == 0
    out = capsys.readouterr().out
    [row] = [ln.split(" | ") for ln in out.splitlines() if ln.startswith("| digits |")]
    split, refit = fits
    if kept == "all":
        want = len(split.history["loss"])
    elif stopping:  # val_loss: the lowest
        want = int(np.argmin(split.history["val_loss"])) + 1
    else:  # the default monitor, the validation AUC: the highest
        want = int(np.argmax(split.history["val_auc_epoch"])) + 1
    assert len(refit.history["loss"]) == want and row[8].rstrip(" |") == f"epochs={want}"
    assert row[1] == "Siamese (the given trial config)" and all(0.0 <= float(v) <= 1.0 for v in row[3:8])
    assert "seed 0: " in out  # the data's notes, as a run prints them


def test_ceiling_a_diverged_fit_is_one_error_line(digits_cache, capsys):
    from benchmarks import ceiling

    assert ceiling.main(["--data", "digits", "--seeds", "0", "--no-sklearn", f"++data.cache_dir={digits_cache}",
                         "++data.n_train=300", "++data.n_test=100", "training.epochs=2", "optimizer.learning_rate=1e9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training diverged"), err


def test_ceiling_refuses_a_schedule_the_refit_cannot_repeat(digits_cache, capsys):
    from benchmarks import ceiling

    assert ceiling.main(["--data", "digits", "--seeds", "0", f"++data.cache_dir={digits_cache}", "optimizer.schedule=cosine"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer.schedule=cosine" in err[0] and "optimizer.schedule=constant" in err[0]


@pytest.mark.parametrize("argv, says", [
    (["seed=3"], "seed is set by this benchmark"),
    (["tracking.uri=/tmp/x"], "tracking.uri is set by this benchmark"),
    (["hydra.run.dir=/tmp/x"], "hydra.run.dir is set by this benchmark"),
    (["--no-sklearn"], "--no-sklearn leaves nothing to measure"),
    (["--no-sklearn", "++data.n_train=300"], "--no-sklearn leaves nothing to measure"),
    (["--seeds", "a"], "not a comma-separated list"),
    (["--seeds", "0,0"], "give distinct seeds"),
    (["--seeds", "-1"], "give distinct seeds of 0 or more"),
])
def test_ceiling_bad_arguments_are_one_usage_line(argv, says, capsys):
    from benchmarks import ceiling

    with pytest.raises(SystemExit) as exit_:
        ceiling.main(argv)
    assert exit_.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("tool, args, signum, code, debug", [
    ("implied", ["--ratios", "0,1,2,3", "--seeds", "0,1", "training.epochs=1"], "SIGINT", 130, "0"),
    ("ceiling", ["--seeds", "0,1,2"], "SIGTERM", 143, "0"),
    ("implied", ["--ratios", "0,1,2,3", "--seeds", "0,1", "training.epochs=1"], "SIGTERM", 143, "1"),
])
def test_single_question_tools_stopped_say_one_line_not_a_traceback(tmp_path, digits_cache, tool, args, signum, code,
                                                                     debug):
    """Ctrl-C or SIGTERM while a single-question tool (``benchmarks.implied``, ``ceiling``, …) measures: one
    ``error: stopped by …`` line, the shell's code for the signal, no table and no traceback (with
    ``SIAMESE_DEBUG=1`` the traceback too, and still the signal's code)."""
    import signal

    argv = [sys.executable, "-m", f"benchmarks.{tool}", "--data", "digits", f"++data.cache_dir={digits_cache}",
            "++data.n_train=300", "++data.n_test=100", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "SIAMESE_DEBUG": debug}
    proc = subprocess.Popen(argv, cwd=project_root(), env=env, stdout=subprocess.PIPE,
                            stderr=(tmp_path / "err.log").open("w"), text=True)
    first = proc.stdout.readline()  # the first measurement printed: the tool is mid-way through its rows
    assert first and proc.poll() is None, f"ended before a stop could land: {first!r}"
    proc.send_signal(getattr(signal, signum))
    rest = proc.stdout.read()
    assert proc.wait(timeout=300) == code
    err = (tmp_path / "err.log").read_text()
    assert ("Traceback" in err) == (debug == "1"), err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"error: stopped by {'Ctrl-C (SIGINT)' if signum == 'SIGINT' else 'signal SIGTERM'}; nothing was kept")
    assert "| digits |" not in rest  # no table from a stopped run


def test_ceiling_a_bad_value_is_one_error_line_before_anything_trains(digits_cache, capsys):
    from benchmarks import ceiling

    assert ceiling.main(["--data", "digits", "--seeds", "0,1", f"++data.cache_dir={digits_cache}", "model.dropout=lots"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "model.dropout" in err[0]
    assert "seed 0" not in captured.out  # no learner ran
