"""The Siamese model: a shared encoder, a symmetric comparison and a head, in ``keras.ops``.

The custom layers live in :mod:`siamese.layers` (registered, so a saved ``.keras`` file loads
in safe mode). Scores follow one convention: higher = more similar (see :func:`scores`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from siamese.errors import ConfigError
from siamese.layers import Distance, L2Normalize, PairFeatures
from siamese.losses import LOSS_TARGET, PairAccuracy, build_loss

DISTANCES = ("l2", "l1", "cosine", "learned")
HEAD_FEATURES = tuple(PairFeatures.PARTS)
SCHEDULES = ("constant", "cosine", "plateau")
OUTPUT_ACTIVATIONS = ("linear", "sigmoid")
ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "selu", "swish", "sigmoid", "linear")
OPTIMIZERS = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}


def output_kind(model_cfg: Any, loss_name: str) -> str:
    """What the model outputs for this model/loss pair: ``distance``, ``logit`` or ``probability``.

    Raises:
        ConfigError: for an unknown value or a combination without a meaning.
    """
    checks = (
        ("model.distance", model_cfg.distance, DISTANCES),
        ("model.output_activation", model_cfg.output_activation, OUTPUT_ACTIVATIONS),
        ("model.activation", model_cfg.activation, ACTIVATIONS),
        ("loss", loss_name, tuple(LOSS_TARGET)),
    )
    for key, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}")
    if not 0.0 <= float(model_cfg.dropout) < 1.0:
        raise ConfigError(f"model.dropout={model_cfg.dropout} must be in [0, 1)")
    if int(model_cfg.depth) < 1 or int(model_cfg.width) < 1:
        raise ConfigError("model.depth and model.width must be at least 1")
    _check_regularisation(model_cfg)
    if LOSS_TARGET[loss_name] == "logit":
        return "logit" if model_cfg.output_activation == "linear" else "probability"
    if model_cfg.distance == "learned":
        raise ConfigError(
            f"loss={loss_name} trains a distance, but model.distance=learned outputs a logit; "
            "use loss=bce with the learned head"
        )
    if model_cfg.output_activation != "linear":
        raise ConfigError(
            f"loss={loss_name} trains the raw distance; model.output_activation=sigmoid applies "
            "to a logit: use loss=bce, or output_activation=linear"
        )
    return "distance"


def head_features(model_cfg: Any) -> tuple[str, ...]:
    """The learned head's pair features (``model.head_features``, e.g. ``sum+absdiff+product``)."""
    value = model_cfg.get("head_features", "absdiff+product")
    names = value.split("+") if isinstance(value, str) else list(value)
    return tuple(str(n).strip() for n in names if str(n).strip())


def _check_regularisation(model_cfg: Any) -> None:
    """The regularisation and head keys: input noise and dropout, L2, the learned head's shape."""
    if not 0.0 <= float(model_cfg.get("input_dropout", 0.0)) < 1.0:
        raise ConfigError(f"model.input_dropout={model_cfg.get('input_dropout')} must be in [0, 1)")
    for key in ("input_noise", "l2"):
        if float(model_cfg.get(key, 0.0)) < 0.0:
            raise ConfigError(f"model.{key}={model_cfg.get(key)} must be at least 0")
    if int(model_cfg.get("head_depth", 1)) < 1:
        raise ConfigError(f"model.head_depth={model_cfg.get('head_depth')} must be at least 1")
    feats = head_features(model_cfg)
    if not feats or any(f not in HEAD_FEATURES for f in feats):
        raise ConfigError(f"model.head_features={model_cfg.get('head_features')!r}: names from {list(HEAD_FEATURES)} "
                          "joined by +, e.g. sum+absdiff+product")


def build_encoder(dim: int, cfg: Any) -> keras.Model:
    """The shared tower: ``depth`` Dense layers with dropout between them, then an optional
    linear projection to ``embedding_dim`` and optional L2 normalisation.

    With ``residual`` the embedding is ``input + Dense(input width)(hidden)``, that last layer
    starting at zero: training starts from the input vectors' own geometry (the cosine baseline,
    for a cosine head) instead of a random projection of it; ``embedding_dim`` is then unused.
    """
    inp = keras.Input(shape=(dim,), name="vector")
    x = inp
    # Training-time only (identity when scoring), so scores stay deterministic and symmetric.
    if float(cfg.get("input_noise", 0.0)) > 0:
        x = layers.GaussianNoise(float(cfg.input_noise), name="input_noise")(x)
    if float(cfg.get("input_dropout", 0.0)) > 0:
        x = layers.Dropout(float(cfg.input_dropout), name="input_dropout")(x)
    base = x
    reg = _kernel_l2(cfg)
    residual = bool(cfg.residual)
    for i in range(int(cfg.depth)):
        x = layers.Dense(int(cfg.width), activation=cfg.activation, name=f"dense_{i}", kernel_regularizer=reg)(x)
        if cfg.batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
        last = i == int(cfg.depth) - 1
        # As in the question, no dropout after the last hidden layer when it is the embedding.
        if cfg.dropout > 0 and (not last or cfg.embedding_dim or residual):
            x = layers.Dropout(float(cfg.dropout), name=f"dropout_{i}")(x)
    if residual:
        delta = layers.Dense(dim, kernel_initializer="zeros", name="residual", kernel_regularizer=reg)(x)
        x = layers.Add(name="embedding")([base, delta])
    elif cfg.embedding_dim:
        x = layers.Dense(int(cfg.embedding_dim), name="embedding", kernel_regularizer=reg)(x)
    if cfg.normalize_embedding:
        x = L2Normalize(name="l2_normalize")(x)
    return keras.Model(inp, x, name="encoder")


def _kernel_l2(cfg: Any) -> keras.regularizers.Regularizer | None:
    """``model.l2`` as a kernel regulariser (None at 0)."""
    value = float(cfg.get("l2", 0.0))
    return keras.regularizers.L2(value) if value > 0 else None


def build_model(dim: int, model_cfg: Any, kind: str) -> keras.Model:
    """Two inputs (``left``, ``right``) → shared encoder → comparison → head.

    Args:
        dim: width of one side's vectors.
        model_cfg: the ``model`` config node.
        kind: the output kind :func:`output_kind` decided for this model and loss.

    A distance head outputs the distance itself (for contrastive losses). A logit head puts a
    calibrating Dense layer on the pair features (for ``l1`` this is the question's accepted
    advice: |u−v| → Dense(1)); the learned head puts ``head_depth`` hidden layers of ``head_width``
    on ``head_features`` (default [|u−v|, u⊙v]) first.
    """
    left, right = keras.Input(shape=(dim,), name="left"), keras.Input(shape=(dim,), name="right")
    encoder = build_encoder(dim, model_cfg)
    feats = PairFeatures(model_cfg.distance, head_features(model_cfg), name="pair_features")([encoder(left), encoder(right)])
    if kind == "distance":
        out = Distance(model_cfg.distance, name="distance")(feats)
    else:
        if model_cfg.distance == "learned":
            for i in range(int(model_cfg.get("head_depth", 1))):
                feats = layers.Dense(int(model_cfg.head_width), activation="relu", kernel_regularizer=_kernel_l2(model_cfg),
                                     name="head_hidden" if i == 0 else f"head_hidden_{i}")(feats)
        # A one-feature cosine head starts with a scale (a temperature, as in CLIP): from Keras'
        # small random init, BCE gradients through cos ∈ [-1, 1] are too weak to learn (measured:
        # val AUC stuck near 0.45 after 25 epochs on digits).
        # An l1/l2 head starts as "closer is more similar": logit = b − 4·mean(|u−v| or (u−v)²).
        # From a random-sign init it often learned the inverse on MRPC (val AUC 0.37); with it,
        # 0.65, and digits unchanged (0.9983 against 0.9987). 4 was the best of 1, 4, 10, 30 on
        # the validation split of both.
        init = {}
        if model_cfg.distance == "cosine":
            init = {"kernel_initializer": keras.initializers.Constant(10.0)}
        elif model_cfg.distance in ("l1", "l2"):
            init = {"kernel_initializer": keras.initializers.Constant(-4.0 / int(feats.shape[-1]))}
        out = layers.Dense(1, name="logit", **init)(feats)
        if kind == "probability":
            out = layers.Activation("sigmoid", name="probability")(out)
    return keras.Model([left, right], out, name="siamese")


def compile_model(model: keras.Model, cfg: Any, kind: str) -> None:
    """Attach optimizer, loss and the per-epoch accuracy from a full run config.

    The config is checked first by :meth:`siamese.engine.RunSpec.of` (optimizer name, output kind).
    """
    opt = cfg.optimizer
    kwargs = {"learning_rate": float(opt.learning_rate)}
    if opt.name == "adamw" or float(opt.get("weight_decay") or 0.0) > 0:  # decoupled weight decay
        kwargs["weight_decay"] = float(opt.weight_decay)
    model.compile(
        optimizer=OPTIMIZERS[opt.name](**kwargs),
        loss=build_loss(cfg.loss, cfg.model.output_activation),
        metrics=[PairAccuracy(kind)],
        jit_compile=cfg.training.jit_compile,
        steps_per_execution=int(cfg.training.steps_per_execution),
    )


def schedule_callbacks(cfg: Any) -> list[keras.callbacks.Callback]:
    """``optimizer.schedule``: ``constant`` (none), ``cosine`` (per epoch, from the learning rate to
    0 over ``training.epochs``) or ``plateau`` (halved when ``val_loss`` stalls for 2 epochs)."""
    schedule, lr = str(cfg.optimizer.get("schedule", "constant")), float(cfg.optimizer.learning_rate)
    if schedule == "cosine":
        epochs = max(int(cfg.training.epochs), 1)
        return [keras.callbacks.LearningRateScheduler(lambda epoch: lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs)))]
    if schedule == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=lr / 100)]
    return []


def outputs(model: keras.Model, left: np.ndarray, right: np.ndarray, one_call_rows: int = 16_384) -> np.ndarray:
    """The model's outputs for pairs, as a flat float64 array.

    Up to ``one_call_rows`` pairs go through ``predict_on_batch`` (about 4 ms for 1,000 pairs, against
    16 ms for an eager call and more for ``predict``'s set-up, which dominated small epochs).
    Larger sets are batched by ``predict``.
    """
    if len(left) <= one_call_rows:
        out = model.predict_on_batch([np.ascontiguousarray(left), np.ascontiguousarray(right)])
    else:
        out = model.predict([left, right], batch_size=8192, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(-1)


def scores(output: np.ndarray, kind: str) -> np.ndarray:
    """Model output → score, higher = more similar (a distance is negated)."""
    out = np.asarray(output, dtype=np.float64).reshape(-1)
    return -out if kind == "distance" else out
