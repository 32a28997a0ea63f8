"""Siamese networks on vector pairs, with tracked hyperparameter studies.

Importing the package imports no TensorFlow: a task that trains or loads a model starts it with
:mod:`siamese.backend`. The module map is in ARCHITECTURE.md.
"""

from siamese.paths import register_resolvers

register_resolvers()

__version__ = "0.1.0"
