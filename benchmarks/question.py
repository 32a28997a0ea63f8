"""What the study says about the question: the objective by each choice the question asked about.

Built from the default studies' trials of the accuracy benchmark, read back from MLflow with the
same function as ``python -m siamese.report data=… report.by=loss,model.distance,…``, so anyone can
regenerate it for their own data and study.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from benchmarks.common import Result, Table
from siamese.report import by_choice
from siamese.tracking import children

# The question's choices: contrastive vs BCE, L1/L2/cosine/learned head, dropout, depth, output.
KEYS = {"loss": "loss", "model.distance": "distance / head", "model.dropout": "dropout",
        "model.depth": "depth", "model.output_activation": "output activation"}


def _label(value: object) -> str:
    try:
        return f"{float(value):g}"  # keras-tuner's 0.30000000000000004 → 0.3
    except (TypeError, ValueError):
        return str(value)


def run(quick: bool, accuracy: dict) -> Result:
    studies, store = accuracy["data"]["studies"], accuracy["data"]["store"]
    data = "mrpc-minilm" if "mrpc-minilm" in studies else "digits"
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    parents = mlflow.search_runs(search_all_experiments=True, filter_string="tags.kind = 'study'",
                                 order_by=["start_time ASC"], output_format="list")
    # One parent per study, the last that finished: a resumed benchmark ran again a study that a stop had
    # cut short, and that attempt's parent (KILLED, or RUNNING after a kill -9) is still in the store.
    latest = {p.data.tags.get("study"): p.info.run_id for p in parents if p.info.status == "FINISHED"}
    ids = [latest[name] for name in studies[data] if name in latest]
    frame = pd.concat([children(i) for i in ids], ignore_index=True)
    objective = "val_auc"
    n_trials = int(((frame["tags.kind"] == "trial") & (frame["status"] == "FINISHED")).sum())
    result = Result("question", quick, "", data={"data": data, "studies": studies[data], "trials": n_trials})
    for key, title in KEYS.items():
        groups = by_choice(frame, [key], objective)[key]
        table = Table(f"{data}: {objective} by {title} ({n_trials} trials of {len(ids)} default studies)",
                      [title, "trials", f"mean {objective}", "sd", f"max {objective}"])
        for value, row in groups.iterrows():
            table.rows.append([_label(value), int(row["count"]), float(row["mean"]),
                               float(row["sd"]) if pd.notna(row["sd"]) else "", float(row["max"])])
        result.tables.append(table)
    result.notes.append(f"Regenerate for one study: python -m siamese.report data={data} study={studies[data][0]} "
                        f"'report.by=loss,model.distance,model.dropout,model.depth,model.output_activation' "
                        f"tracking.uri=sqlite:///{Path(store)}/mlflow.db")
    return result
