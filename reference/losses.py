"""Losses with their gradients (NumPy, float64).

Each loss returns `(loss, grad)` where `grad` is dL/d(first argument) and has its shape.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference.activations import softmax

Array = NDArray[np.float64]


def half_sum_squares(y: ArrayLike, target: ArrayLike) -> tuple[float, Array]:
    """L = sum((y - target)^2) / 2 over all elements (the batch is summed, not averaged); dL/dy = y - target.

    y, target: same shape, any shape -> (scalar, array shaped like y).
    """
    diff = np.asarray(y, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return float(0.5 * np.sum(diff * diff)), diff


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> tuple[float, Array]:
    """L = mean_n( -log softmax(z_n)[y_n] ); dL/dz = (softmax(z) - onehot(y)) / n.

    logits: (n, k) float; labels: (n,) integer class indices in [0, k) -> (scalar, (n, k)).
    Uses log-sum-exp with the row maximum subtracted, so logits like +-1000 stay finite.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    n = z.shape[0]
    shifted = z - np.max(z, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = float(-np.mean(log_probs[np.arange(n), y]))
    grad = softmax(z, axis=1)
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n
