"""Activation functions and their derivatives (NumPy, float64), as the course defines them.

Every function is elementwise over an array of any shape and returns an array of that shape, except
`softmax` (normalises along one axis) and `softmax_jacobian` (adds one axis). At the kinks the course
takes the left derivative: `relu_grad(0) == 0`, `leaky_relu_grad(0) == alpha`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _f64(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


def sigmoid(x: ArrayLike) -> Array:
    """sigma(x) = 1 / (1 + exp(-x)); any shape -> same shape, finite for any finite x."""
    x = _f64(x)
    # exp(-|x|) never overflows; the two branches are the same formula rearranged.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def sigmoid_grad(x: ArrayLike) -> Array:
    """sigma'(x) = sigma(x) * (1 - sigma(x)); any shape -> same shape."""
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x: ArrayLike) -> Array:
    """tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x)); any shape -> same shape."""
    return np.tanh(_f64(x))


def tanh_grad(x: ArrayLike) -> Array:
    """tanh'(x) = 1 - tanh(x)^2; any shape -> same shape."""
    t = np.tanh(_f64(x))
    return 1.0 - t * t


def relu(x: ArrayLike) -> Array:
    """relu(x) = max(0, x); any shape -> same shape."""
    return np.maximum(_f64(x), 0.0)


def relu_grad(x: ArrayLike) -> Array:
    """relu'(x) = 1 if x > 0 else 0 (left derivative at 0); any shape -> same shape."""
    return (_f64(x) > 0).astype(np.float64)


def leaky_relu(x: ArrayLike, alpha: float = 0.01) -> Array:
    """leaky_relu(x) = x if x > 0 else alpha * x; any shape -> same shape."""
    x = _f64(x)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_grad(x: ArrayLike, alpha: float = 0.01) -> Array:
    """leaky_relu'(x) = 1 if x > 0 else alpha (left derivative at 0); any shape -> same shape."""
    x = _f64(x)
    return np.where(x > 0, 1.0, alpha)


def softmax(x: ArrayLike, axis: int = -1) -> Array:
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `axis`; same shape as x.

    Subtracting the maximum leaves the result unchanged and keeps exp() finite for inputs like +-1000.
    """
    x = _f64(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_jacobian(x: ArrayLike) -> Array:
    """J[..., i, j] = d softmax(x)_i / d x_j = s_i * (delta_ij - s_j), softmax over the last axis.

    Shape (..., k) -> (..., k, k).
    """
    s = softmax(x, axis=-1)
    return s[..., :, None] * (np.eye(s.shape[-1]) - s[..., None, :])
