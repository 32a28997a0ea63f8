"""The question's script as written (Stack Overflow 72201150), ported to Keras 3 and nothing else.

Kept apart from the package on purpose: it is the reference the speed benchmark compares with.
Changes from the original: ``keras.backend`` → ``keras.ops``, ``Input(dim)`` → ``Input((dim,))``,
the data passed in instead of read from ``train.csv``; pandas inputs, batch 32 (Keras' default),
RMSprop, early stopping on val_loss with patience 3 and ``fit`` with validation are unchanged.
"""

from __future__ import annotations

import keras
import pandas as pd
from keras import ops
from keras.layers import Dense, Dropout, Input, Lambda
from keras.models import Model


def euclidean_distance(vectors):
    x, y = vectors
    sum_square = ops.sum(ops.square(x - y), axis=1, keepdims=True)
    return ops.sqrt(ops.maximum(sum_square, keras.config.epsilon()))


def contrastive_loss(y_true, y_pred):
    margin = 1
    return ops.mean(y_true * ops.square(y_pred) + (1 - y_true) * ops.square(ops.maximum(margin - y_pred, 0)))


def accuracy(y_true, y_pred):
    return ops.mean(ops.equal(y_true, ops.cast(y_pred < 0.5, y_true.dtype)))


def create_base_network(input_dim: int, dense_units: int, dropout_rate: float):
    input1 = Input((input_dim,), name="encoder")
    x = input1
    x = Dense(dense_units, activation="relu")(x)
    x = Dropout(dropout_rate)(x)
    x = Dense(dense_units, activation="relu")(x)
    x = Dropout(dropout_rate)(x)
    x = Dense(dense_units, activation="relu", name="Embeddings")(x)
    return Model(input1, x)


def build_siamese_model(input_dim: int):
    shared_network = create_base_network(input_dim, dense_units=128, dropout_rate=0.1)
    left_input = Input((input_dim,))
    right_input = Input((input_dim,))
    encoded_l = shared_network(left_input)
    encoded_r = shared_network(right_input)
    distance = Lambda(euclidean_distance, name="Euclidean-Distance")([encoded_l, encoded_r])
    siamese_net = Model(inputs=[left_input, right_input], outputs=distance)
    siamese_net.compile(loss=contrastive_loss, optimizer="RMSprop", metrics=[accuracy])
    return siamese_net


def run(X_train_val: pd.DataFrame, epochs: int = 100, callbacks: list | None = None):
    """The script's split and fit on a frame in its format (``callbacks``: the benchmark's own, e.g.
    epoch timing, after the script's). Returns (model, history, validation frames)."""
    X_train_val = X_train_val.copy()
    y_train_val = X_train_val.pop("class")
    half = len(X_train_val) // 2  # the script's 991 of 1983 rows
    X_train, X_val = X_train_val[:half], X_train_val[half:]
    y_train, y_val = y_train_val[:half], y_train_val[half:]
    d = X_train.shape[1] // 2
    X_left_train, X_right_train = X_train.iloc[:, :d], X_train.iloc[:, d:]
    X_left_val, X_right_val = X_val.iloc[:, :d], X_val.iloc[:, d:]
    model = build_siamese_model(X_left_train.shape[1])
    es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, verbose=0)
    history = model.fit(
        [X_left_train, X_right_train],
        y_train,
        validation_data=([X_left_val, X_right_val], y_val),
        epochs=epochs,
        callbacks=[es_callback, *(callbacks or [])],
        verbose=0,
    )
    return model, history, (X_left_val, X_right_val, y_val)
