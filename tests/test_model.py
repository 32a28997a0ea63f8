from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import random_pairs
from siamese.bundle import ModelBundle
from siamese.data import PairSet, Preprocessor
from siamese.errors import ConfigError
from siamese.losses import LOSS_TARGET
from siamese.model import DISTANCES, OUTPUT_ACTIVATIONS, build_model, compile_model, output_kind, scores

COMBOS = list(itertools.product(DISTANCES, LOSS_TARGET, OUTPUT_ACTIVATIONS))


def valid(distance: str, loss: str, act: str) -> bool:
    return LOSS_TARGET[loss] == "logit" or (distance != "learned" and act == "linear")


def run_cfg(distance: str, loss: str, act: str, **model: object):
    return OmegaConf.create({
        "seed": 0,
        "model": {"depth": 2, "width": 16, "dropout": 0.1, "activation": "relu", "batch_norm": True,
                  "embedding_dim": 8, "normalize_embedding": False, "residual": False, "distance": distance,
                  "head_width": 8, "output_activation": act, **model},
        "loss": {"name": loss, "margin": 1.0},
        "optimizer": {"name": "adam", "learning_rate": 0.01, "weight_decay": 0.0},
        "training": {"jit_compile": "auto", "steps_per_execution": 1},
    })


# Every distance, loss and output activation at least once in make test-fast; all of them in make test.
FAST_COMBOS = {("l1", "bce", "linear"), ("l2", "contrastive", "linear"), ("cosine", "online_contrastive", "linear"),
               ("learned", "bce", "sigmoid")}


@pytest.mark.parametrize("distance, loss, act", [pytest.param(*c, marks=() if c in FAST_COMBOS else pytest.mark.slow)
                                                 for c in COMBOS if valid(*c)])
def test_every_valid_combination_trains_and_round_trips(tmp_path, distance, loss, act):
    cfg = run_cfg(distance, loss, act)
    kind = output_kind(cfg.model, loss)
    left, right, y = random_pairs(256, 12)
    model = build_model(12, cfg.model, kind)
    compile_model(model, cfg, kind)
    hist = model.fit([left, right], y, epochs=2, batch_size=64, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    bundle = ModelBundle(model, Preprocessor(), kind, 0.1, 0.2, {})
    pairs = PairSet(left, right, y)
    before = bundle.score(pairs)
    loaded = ModelBundle.load(bundle.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score(pairs), before)
    assert (loaded.kind, loaded.threshold, loaded.f1_threshold) == (kind, 0.1, 0.2)
    # Symmetry: score(a, b) == score(b, a).
    np.testing.assert_allclose(bundle.score(pairs.swapped()), before, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model._flatten_layers())


@pytest.mark.parametrize("distance, loss, act", [c for c in COMBOS if not valid(*c)])
def test_meaningless_combinations_are_rejected(distance, loss, act):
    with pytest.raises(ConfigError, match=f"loss={loss}"):
        output_kind(run_cfg(distance, loss, act).model, loss)


@pytest.mark.parametrize("key, value", [("distance", "l3"), ("output_activation", "softmax"), ("activation", "nope"), ("dropout", 1.0), ("depth", 0)])
def test_unknown_values_are_rejected(key, value):
    with pytest.raises(ConfigError, match=key):
        cfg = run_cfg("l1", "bce", "linear")
        cfg.model[key] = value
        output_kind(cfg.model, "bce")


def test_question_encoder_shape():
    cfg = run_cfg("l2", "contrastive", "linear", depth=3, width=128, embedding_dim=None, batch_norm=False)
    model = build_model(200, cfg.model, "distance")
    encoder = model.get_layer("encoder")
    kinds = [type(layer).__name__ for layer in encoder.layers[1:]]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert encoder.output.shape[-1] == 128


def test_distance_score_is_negated_distance():
    np.testing.assert_array_equal(scores(np.array([[0.2], [1.5]]), "distance"), [-0.2, -1.5])
    np.testing.assert_array_equal(scores(np.array([0.2, -1.5]), "logit"), [0.2, -1.5])


def test_loads_in_safe_mode_without_siamese_imported_custom_objects(tmp_path):
    """The registered layers are what make safe-mode loading work: no custom_objects needed."""
    cfg = run_cfg("cosine", "contrastive", "linear")
    model = build_model(6, cfg.model, "distance")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_array_equal(again.predict([x, x[::-1]], verbose=0), model.predict([x, x[::-1]], verbose=0))


def test_residual_encoder_starts_from_the_inputs_geometry():
    """At init a residual encoder is the identity: a cosine head then gives the cosine baseline."""
    from siamese.baselines import cosine_scores

    left, right, y = random_pairs(64, 12)
    cfg = run_cfg("cosine", "contrastive", "linear", residual=True, dropout=0.3)
    model = build_model(12, cfg.model, "distance")
    distance = model.predict([left, right], verbose=0).ravel()
    np.testing.assert_allclose(1.0 - distance, cosine_scores(PairSet(left, right, y)), atol=1e-5)
    assert model.get_layer("encoder").output.shape[-1] == 12


def test_distance_heads_start_monotone_in_distance():
    """An l1/l2 BCE head starts as logit = b − 4·mean(features): larger differences, lower logit."""
    for distance in ("l1", "l2"):
        model = build_model(6, run_cfg(distance, "bce", "linear").model, "logit")
        kernel = np.asarray(model.get_layer("logit").kernel)
        np.testing.assert_allclose(kernel, -4.0 / kernel.shape[0])
