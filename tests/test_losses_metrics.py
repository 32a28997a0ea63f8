from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

from siamese.losses import ContrastiveLoss, OnlineContrastiveLoss, PairAccuracy
from siamese.metrics import bagged_threshold, best_threshold, choose_thresholds, evaluate


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


@pytest.mark.parametrize("prior", [0.5, 0.66, 0.2])
def test_the_bagged_threshold_finds_the_bayes_cut_of_two_gaussians(prior):
    """On a large sample of equal-variance Gaussian scores per class the accuracy-optimal cut is
    (μ0 + μ1)/2 + σ² ln((1 − π)/π) / (μ1 − μ0); the bagged cut lands on it."""
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < prior).astype(int)
    s = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1.5, y.size)
    bayes = 1.5**2 * np.log((1 - prior) / prior) / 2.0
    assert bagged_threshold(y, s, resamples=50) == pytest.approx(bayes, abs=0.1)


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (20.0, -3.0), (0.01, 5.0)])
def test_the_bagged_threshold_follows_the_scores_units_and_repeats(scale, shift):
    """Distances, logits and probabilities differ in scale: the cut moves with the scores; the same
    scores give the same cut every time (the resampling is seeded)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = y + rng.normal(0, 0.7, 300)
    assert bagged_threshold(y, scale * s + shift) == pytest.approx(scale * bagged_threshold(y, s) + shift)
    assert bagged_threshold(y, s) == bagged_threshold(y, s)


def test_the_bagged_threshold_moves_less_from_validation_to_test():
    """Small validation sets (200 pairs) from one distribution, a large test set: on average over the
    draws, the bagged cut scores higher test accuracy than the single empirical accuracy-maximising cut."""
    rng = np.random.default_rng(7)
    draw = lambda n: (lambda y: (y, y * 2.0 + rng.normal(0, 1.0, n)))((rng.random(n) < 0.6).astype(int))  # noqa: E731
    y_test, s_test = draw(100_000)
    gains = []
    for _ in range(40):
        y_val, s_val = draw(200)
        acc = {rule: np.mean((s_test >= t) == (y_test == 1))
               for rule, t in (("bagged", choose_thresholds(y_val, s_val)["threshold"]),
                               ("empirical", best_threshold(y_val, s_val)[0]))}
        gains.append(acc["bagged"] - acc["empirical"])
    assert np.mean(gains) > 0


def test_the_bagged_threshold_of_degenerate_validation_still_decides():
    """One class only: every validation pair is called that class. Constant scores: a finite cut."""
    rng = np.random.default_rng(2)
    s = rng.normal(size=200)
    assert np.all(s >= bagged_threshold(np.ones(200, int), s))
    assert not np.any(s >= bagged_threshold(np.zeros(200, int), s))
    assert np.isfinite(bagged_threshold(rng.integers(0, 2, 200), np.zeros(200)))


def test_the_bagged_threshold_ignores_row_order_and_never_sits_on_a_score():
    """The same pairs in another row order give the same cut (the resamples are drawn over the pairs
    sorted); the cut is one of the midpoints between distinct validation scores, so no validation
    pair sits on it (scores rounded to make ties and near-ties)."""
    from siamese.metrics import _cuts

    for seed in range(30):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 300)
        s = np.round(y + rng.normal(0, 0.8, 300), 3)
        t = bagged_threshold(y, s)
        perm = rng.permutation(300)
        assert bagged_threshold(y[perm], s[perm]) == t
        assert t in set(_cuts(y.astype(float), s)[0]) and t not in set(s)
