from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

from siamese.losses import ContrastiveLoss, OnlineContrastiveLoss, PairAccuracy
from siamese.metrics import best_threshold, choose_thresholds, evaluate


def test_contrastive_matches_the_question_formula():
    y = np.array([1, 0, 1, 0], dtype=np.float32)
    d = np.array([0.2, 0.3, 1.5, 1.2], dtype=np.float32)
    expected = np.mean(y * d**2 + (1 - y) * np.maximum(1 - d, 0) ** 2)
    assert float(ContrastiveLoss(1.0)(y, d)) == pytest.approx(expected, rel=1e-6)


def test_online_contrastive_uses_hard_pairs_only():
    y = np.array([1, 1, 0, 0], dtype=np.float32)
    d = np.array([0.1, 0.8, 0.5, 2.0], dtype=np.float32)
    # Hard positive: 0.8 (> closest negative 0.5); hard negative: 0.5 (< farthest positive 0.8).
    expected = (0.8**2 + (1 - 0.5) ** 2) / 2
    assert float(OnlineContrastiveLoss(1.0)(y, d)) == pytest.approx(expected, rel=1e-6)
    easy = np.array([0.1, 0.2, 1.5, 2.0], dtype=np.float32)
    assert float(OnlineContrastiveLoss(1.0)(y, easy)) == 0.0


def test_pair_accuracy_rules():
    y = np.array([1, 0, 1, 0], dtype=np.float32)
    acc = PairAccuracy("distance")
    acc.update_state(y, np.array([0.4, 0.6, 0.7, 0.1]))
    assert float(acc.result()) == 0.5
    logit = PairAccuracy("logit")
    logit.update_state(y, np.array([2.0, -1.0, 0.5, -3.0]))
    assert float(logit.result()) == 1.0


def brute_force(y, s, metric):
    cands = np.r_[np.unique(s), s.max() + 1]
    return max(metric(y, (s >= t).astype(int)) for t in cands)


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_are_optimal_on_their_data(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(y + rng.normal(0, 1, 300), 1)  # rounding makes ties
    t_acc, acc = best_threshold(y, s, "accuracy")
    t_f1, f1 = best_threshold(y, s, "f1")
    assert acc == pytest.approx(brute_force(y, s, accuracy_score))
    assert f1 == pytest.approx(brute_force(y, s, lambda a, b: f1_score(a, b, zero_division=0)))
    assert accuracy_score(y, s >= t_acc) == pytest.approx(acc)
    assert f1_score(y, s >= t_f1) == pytest.approx(f1)


def test_evaluate_agrees_with_sklearn_and_reuses_thresholds():
    rng = np.random.default_rng(1)
    y_val, y_test = rng.integers(0, 2, 400), rng.integers(0, 2, 300)
    s_val, s_test = y_val + rng.normal(0, 0.8, 400), y_test + rng.normal(0.3, 0.8, 300)
    chosen = choose_thresholds(y_val, s_val)
    m = evaluate(y_test, s_test, "test", chosen["threshold"], chosen["f1_threshold"], distance=-s_test)
    pred = s_test >= chosen["threshold"]
    assert m["test_auc"] == pytest.approx(roc_auc_score(y_test, s_test))
    assert m["test_ap"] == pytest.approx(average_precision_score(y_test, s_test))
    assert m["test_accuracy"] == pytest.approx(accuracy_score(y_test, pred))
    assert m["test_mcc"] == pytest.approx(matthews_corrcoef(y_test, pred))
    assert m["test_f1"] == pytest.approx(f1_score(y_test, s_test >= chosen["f1_threshold"]))
    assert m["test_accuracy_fixed"] == pytest.approx(accuracy_score(y_test, -s_test < 0.5))
    # Test's own best threshold would do at least as well: proof it was not used.
    assert best_threshold(y_test, s_test)[1] >= m["test_accuracy"]
    with pytest.raises(ValueError, match="NaN"):
        evaluate(y_test, np.full(300, np.nan), "test", 0.0, 0.0)
