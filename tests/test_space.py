"""The stronger space: input noise and dropout, kernel L2, weight decay, a deeper learned head on
[u+v, |u−v|, u⊙v], learning-rate schedules, BCE label smoothing; each symmetric and safe-mode loadable."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import random_pairs
from siamese.bundle import ModelBundle
from siamese.data import PairSet, Preprocessor
from siamese.errors import ConfigError
from siamese.losses import build_loss
from siamese.model import build_model, compile_model, output_kind


def run_cfg(model: dict | None = None, loss: dict | None = None, optimizer: dict | None = None):
    return OmegaConf.create({
        "seed": 0,
        "model": {"depth": 2, "width": 16, "dropout": 0.1, "activation": "relu", "batch_norm": False,
                  "embedding_dim": 8, "normalize_embedding": False, "residual": False, "distance": "learned",
                  "head_width": 8, "output_activation": "linear", **(model or {})},
        "loss": {"name": "bce", "margin": None, **(loss or {})},
        "optimizer": {"name": "adam", "learning_rate": 0.01, "weight_decay": 0.0, **(optimizer or {})},
        "training": {"jit_compile": "auto", "steps_per_execution": 1, "epochs": 3},
    })


@pytest.mark.parametrize("model, loss, optimizer", [
    ({"input_noise": 0.1, "input_dropout": 0.2, "distance": "l1"}, {}, {}),
    ({"l2": 1e-3, "residual": True}, {}, {"weight_decay": 1e-3}),
    ({"head_features": "sum+absdiff+product", "head_depth": 3, "l2": 1e-4}, {"label_smoothing": 0.1}, {}),
    ({"distance": "cosine", "input_noise": 0.05}, {"label_smoothing": 0.05}, {"name": "adamw", "weight_decay": 1e-4}),
])
def test_new_options_train_stay_symmetric_and_load_in_safe_mode(tmp_path, model, loss, optimizer):
    cfg = run_cfg(model, loss, optimizer)
    kind = output_kind(cfg.model, cfg.loss.name)
    left, right, y = random_pairs(256, 12)
    net = build_model(12, cfg.model, kind)
    compile_model(net, cfg, kind)
    hist = net.fit([left, right], y, epochs=2, batch_size=64, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    pairs = PairSet(left, right, y)
    bundle = ModelBundle(net, Preprocessor(), kind, 0.0, 0.0, {})
    before = bundle.score(pairs)
    np.testing.assert_allclose(bundle.score(pairs.swapped()), before, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bundle.score(pairs), before)  # noise and dropout are off when scoring
    again = keras.models.load_model(bundle.save(tmp_path / "m") / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(np.asarray(again.predict_on_batch([left, right])).ravel(),
                                  np.asarray(net.predict_on_batch([left, right])).ravel())


def test_the_options_build_what_they_say():
    cfg = run_cfg({"head_features": "sum+absdiff+product", "head_depth": 2, "l2": 1e-3, "input_noise": 0.1,
                   "input_dropout": 0.2}, {"label_smoothing": 0.1}, {"weight_decay": 1e-4})
    net = build_model(12, cfg.model, "logit")
    compile_model(net, cfg, "logit")
    encoder = net.get_layer("encoder")
    assert [type(layer).__name__ for layer in encoder.layers[1:3]] == ["GaussianNoise", "Dropout"]
    assert all(layer.kernel_regularizer is not None for layer in encoder.layers if isinstance(layer, keras.layers.Dense))
    assert net.get_layer("pair_features").output.shape[-1] == 3 * 8  # [u+v, |u−v|, u⊙v] of 8-wide embeddings
    assert [layer.name for layer in net.layers if layer.name.startswith("head_hidden")] == ["head_hidden", "head_hidden_1"]
    assert float(net.optimizer.weight_decay) == pytest.approx(1e-4)
    # The default learned head is unchanged: [|u−v|, u⊙v].
    plain = build_model(12, run_cfg().model, "logit")
    assert plain.get_layer("pair_features").output.shape[-1] == 2 * 8


def test_label_smoothing_moves_the_bce_targets():
    loss = build_loss(OmegaConf.create({"name": "bce", "margin": None, "label_smoothing": 0.2}), "linear")
    logits, y = np.array([[2.0], [-1.0]], np.float32), np.array([[1.0], [0.0]], np.float32)
    target = y * 0.8 + 0.1
    p = 1 / (1 + np.exp(-logits))
    expected = np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p)))
    assert float(loss(y, logits)) == pytest.approx(expected, rel=1e-5)


def test_cosine_schedule_follows_the_epochs(make_cfg):
    from siamese.data import load_dataset
    from siamese.engine import RunSpec, fit

    cfg = make_cfg("optimizer.schedule=cosine", "optimizer.learning_rate=0.004", "training.epochs=3",
                   "training.early_stopping.patience=null")
    fitted = fit(RunSpec.of(cfg), load_dataset(cfg.data, 0))
    np.testing.assert_allclose(fitted.history["learning_rate"], [0.004, 0.003, 0.001], rtol=1e-5)
    plateau = make_cfg("optimizer.schedule=plateau")
    from siamese.model import schedule_callbacks

    (cb,) = schedule_callbacks(plateau)
    assert isinstance(cb, keras.callbacks.ReduceLROnPlateau) and cb.monitor == "val_loss"


@pytest.mark.parametrize("override, message", [
    ("optimizer.schedule=step", "optimizer.schedule='step' is not one of"),
    ("loss.label_smoothing=1.5", "loss.label_smoothing=1.5 must be a number in [0, 1)"),
    ("model.head_features=sum+l3", "model.head_features='sum+l3': names from"),
    ("model.input_dropout=1.0", "model.input_dropout=1.0 must be a number in [0, 1)"),
    ("model.l2=-1", "model.l2=-1 must be"),
    ("model.head_depth=0", "model.head_depth=0 must be"),
])
def test_bad_values_are_config_errors(make_cfg, override, message):
    from siamese.engine import RunSpec

    with pytest.raises(ConfigError, match=re.escape(message)):
        RunSpec.of(make_cfg(override))


@pytest.mark.parametrize("space", ["default", "wide"])
def test_every_searched_number_given_as_text_is_one_error_naming_its_key(make_cfg, space):
    """``model.input_dropout=abc`` on the command line was a ValueError traceback from the model builder:
    every numeric key either space searches is now checked by its rule before anything is built."""
    import yaml

    from siamese.engine import RunSpec
    from siamese.paths import project_root

    params = yaml.safe_load((project_root() / "conf" / "search" / f"{space}.yaml").read_text())["params"]
    numeric = [k for k, spec in params.items() if not isinstance(spec, list)
               and (spec["type"] in ("int", "float") or (spec["type"] == "choice" and all(
                   isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec["values"])))]
    assert "model.input_dropout" in numeric
    for key in numeric:
        with pytest.raises(ConfigError, match=re.escape(f"{key}='abc'") + "|" + re.escape(f"{key}=abc")):
            RunSpec.of(make_cfg(f"{key}=abc"))


def test_label_smoothing_is_for_bce_only(make_cfg):
    from siamese.engine import RunSpec

    with pytest.raises(ConfigError, match="applies to loss=bce only"):
        RunSpec.of(make_cfg("loss=contrastive", "model.distance=l2", "loss.label_smoothing=0.1"))


def test_wide_space_searches_the_new_keys(make_cfg):
    from siamese.search import parse_space

    cfg = make_cfg("search=wide", config="tune")
    keys = {p.key for p in parse_space(cfg.search.params, cfg)}
    assert keys >= {"model.input_noise", "model.input_dropout", "model.l2", "model.head_depth", "model.head_features",
                    "optimizer.weight_decay", "optimizer.schedule", "loss.label_smoothing"}


def test_implied_pairs_takes_a_float_range_and_integer_choices(make_cfg):
    """``training.implied_pairs`` is a number ≥ 0: a float range and whole-number choices both parse."""
    from siamese.search import parse_space

    for current in ("data.implied_pairs=4", "data.implied_pairs=0.5"):  # now a whole number, or not
        cfg = make_cfg(current, config="tune")
        for spec in ({"type": "float", "min": 0.0, "max": 2.0}, {"type": "choice", "values": [0, 2, 4]}):
            (param,) = parse_space({"training.implied_pairs": spec}, cfg)
            assert param.key == "training.implied_pairs"
