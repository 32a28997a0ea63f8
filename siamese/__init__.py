"""Siamese networks on vector pairs, with tracked hyperparameter studies."""

import os

# TensorFlow's C++ start-up chatter hides the one-line errors this tool prints.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from siamese.paths import register_resolvers

register_resolvers()

__version__ = "0.1.0"
