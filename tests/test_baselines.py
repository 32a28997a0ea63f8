"""Baselines tuned like trials: symmetric features, C chosen on validation, checked settings."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from siamese.baselines import FEATURES, LogisticSettings, logistic, pair_features, score_baseline, tuned_logistic
from siamese.data import load_dataset
from siamese.errors import ConfigError


@pytest.fixture(scope="module")
def digits(digits_cache):
    from siamese.cli import compose_config

    cfg = compose_config("train", [f"++data.cache_dir={digits_cache}", "++data.n_train=600", "++data.n_test=200"])
    return load_dataset(cfg.data, 0)


def test_every_feature_is_symmetric(digits):
    pairs = digits.val
    for name in FEATURES:
        np.testing.assert_allclose(pair_features(pairs, (name,)), pair_features(pairs.swapped(), (name,)), rtol=1e-6)
    assert pair_features(pairs, LogisticSettings().features).shape[1] == 3 * pairs.dim + 1


def test_c_is_the_grid_value_best_on_validation(digits):
    settings = LogisticSettings(c_grid=(1e-4, 1e-2, 1.0))
    scorer, params = tuned_logistic(digits, settings, "val_auc", "max")
    # Each C fit from scratch, scored on validation: the chosen one is the best of them.
    scaler = StandardScaler().fit(pair_features(digits.train, settings.features))
    x_train, x_val = (scaler.transform(pair_features(p, settings.features)) for p in (digits.train, digits.val))
    fresh = {c: roc_auc_score(digits.val.y, LogisticRegression(C=c, max_iter=2000).fit(x_train, digits.train.y)
                              .decision_function(x_val)) for c in settings.c_grid}
    for c, value in fresh.items():
        assert params["by_C"][c] == pytest.approx(value, abs=2e-3)
    assert params["C"] == max(params["by_C"], key=params["by_C"].get)
    assert params["features"] == "sum,absdiff,product,cosine"
    metrics = score_baseline(scorer, digits)
    assert metrics["val_auc"] == pytest.approx(params["by_C"][params["C"]], abs=1e-9)
    assert {"test_auc", "test_accuracy", "val_threshold"} <= set(metrics)
    # Tuned on validation, it is at least as good there as the old fixed-C baseline on [|u−v|, u⊙v].
    assert metrics["val_auc"] >= score_baseline(logistic(digits), digits)["val_auc"] - 1e-9


def test_an_objective_a_baseline_lacks_chooses_by_auc(digits):
    _, by_loss = tuned_logistic(digits, LogisticSettings(c_grid=(1e-3, 1.0)), "val_loss", "min")
    _, by_auc = tuned_logistic(digits, LogisticSettings(c_grid=(1e-3, 1.0)), "val_auc", "max")
    assert by_loss["C"] == by_auc["C"] and by_loss["by_C"] == by_auc["by_C"]


@pytest.mark.parametrize("node, message", [
    ({"features": ["sum", "l3"]}, "logistic.features=['sum', 'l3']: each must be one of"),
    ({"features": []}, "at least one"),
    ({"c_grid": []}, "logistic.c_grid must be a non-empty list of positive numbers"),
    ({"c_grid": [0.1, -1]}, "logistic.c_grid must be a non-empty list of positive numbers"),
    ({"c_grid": ["x"]}, "logistic.c_grid must be a list of positive numbers"),
])
def test_bad_logistic_settings_are_config_errors(node, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LogisticSettings.of(OmegaConf.create(node))


def test_bad_baseline_or_confirm_settings_fail_before_any_run(make_cfg, store, tmp_path):
    from mlflow.tracking import MlflowClient

    from siamese.tune import tune

    for override, message in (("logistic.features=[sum,nope]", "logistic.features"),
                              ("confirm.top_k=-1", "confirm.top_k must be a whole number of at least 0"),
                              ("confirm.seeds=0", "confirm.seeds must be a whole number of at least 1")):
        with pytest.raises(ConfigError, match=message):
            tune(make_cfg(f"study_dir={tmp_path}/s", "study=s", override, config="tune"))
    assert MlflowClient(f"sqlite:///{store}/mlflow.db").get_experiment_by_name("digits") is None
