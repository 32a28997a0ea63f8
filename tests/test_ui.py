"""The study as a user sees it: a real ``mlflow ui`` over a 3-trial study, driven by headless Chromium.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and Playwright's Python package (dev extra);
Playwright drives that Chromium, so no browser is downloaded. Screenshots go to the test's tmp dir
(pytest keeps the last runs' tmp dirs, so a failure's screenshots stay to look at).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import compose_cfg

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DATA = ["++data.n_train=600", "++data.n_test=200"]
# The model-training view (runs table); MLflow 3.17 opens on GenAI otherwise (see siamese.runmeta).
VIEW = "?workflowType=machine_learning"
WAIT_MS = 180_000  # a page on a loaded 2-core machine; an assertion that fails still fails, later


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ui_server(tmp_path):
    """Start ``mlflow ui`` over a store as a subprocess; always killed (its whole process group)."""
    procs = []

    def start(db: Path) -> str:
        port = _free_port()
        log = open(tmp_path / "mlflow-ui.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
                                 "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log))
        base = f"http://127.0.0.1:{port}"
        while True:  # until it answers or dies; pytest's timeout bounds the whole test
            if proc.poll() is not None:
                raise AssertionError(f"mlflow ui exited {proc.returncode}: {(tmp_path / 'mlflow-ui.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return base
            except OSError:
                time.sleep(0.5)

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.mark.slow
def test_study_in_the_mlflow_ui(tmp_path, digits_cache, digits_files, ui_server):
    from playwright import sync_api as playwright  # the dev extra

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: apt-get install -y chromium (.ci/run does)"
    from siamese.promote import promote
    from siamese.tune import tune

    store = tmp_path / "mlruns"
    store.mkdir()

    def cfg(*overrides: str, config: str):
        return compose_cfg(store, digits_cache, *DATA, *overrides, config=config)

    tune(cfg(f"study_dir={tmp_path}/study", "study=ui", "tuner.max_trials=3", "training.epochs=2",
             "training.verbose=0", "confirm.top_k=0", config="tune"))
    promoted = promote(cfg("study=ui", "promote.force=true", config="promote"))
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name("digits")
    parent = client.search_runs([exp.experiment_id], "tags.kind = 'study'")[0]
    runs = client.search_runs([exp.experiment_id], "tags.study = 'ui'")
    trial_names = sorted(r.info.run_name for r in runs if r.data.tags.get("kind") == "trial")
    assert trial_names == ["ui/trial-0", "ui/trial-1", "ui/trial-2"]
    base = ui_server(store / "mlflow.db")
    shots = tmp_path / "screens"
    shots.mkdir()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        try:
            # The runs table: the study's parent, then (expanded) its trials and baselines.
            page.goto(f"{base}/#/experiments/{exp.experiment_id}{VIEW}")
            page.get_by_role("link", name="ui", exact=True).wait_for()
            close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
            if close.count():  # MLflow's assistant panel hides half the table
                close.first.click()
            page.locator('button[data-component-id$="runnamecellrenderer.tsx_46"]').first.click()  # expand the parent
            for name in [*trial_names, "ui/baseline-cosine", "ui/baseline-logistic"]:
                page.get_by_role("link", name=name, exact=True).wait_for()
            page.screenshot(path=shots / "runs_table.png")

            # The parent's page: the winner's values as params, then its artifacts.
            page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}{VIEW}")
            page.get_by_text(f"best.{next(k for k in parent.data.params if k.startswith('best.'))[5:]}").first.wait_for()
            page.screenshot(path=shots / "parent_run.png", full_page=True)
            page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts{VIEW}")
            for name in ("leaderboard.csv", "search_space.yaml", "plots"):
                page.get_by_text(name, exact=True).first.wait_for()
            page.get_by_text("plots", exact=True).first.click()
            page.get_by_text("objective_by_trial.png", exact=True).first.wait_for()
            page.get_by_text("objective_vs_params.png", exact=True).first.click()
            figure = page.locator('img[alt="plots/objective_vs_params.png"]')
            figure.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figure.element_handle())
            page.screenshot(path=shots / "parent_artifacts.png", full_page=True)

            # The model version: the champion alias and the winning trial as its source run.
            page.goto(f"{base}/#/models/siamese-digits/versions/{promoted['version']}{VIEW}")
            page.get_by_text(re.compile(r"^@\s*champion$")).first.wait_for()
            source = client.get_run(promoted["source_run_id"]).info.run_name
            page.get_by_role("link", name=source, exact=True).wait_for()
            page.screenshot(path=shots / "model_version.png", full_page=True)
        except Exception:
            page.screenshot(path=shots / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
