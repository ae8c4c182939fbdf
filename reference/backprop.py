"""Forward and backward pass of the course's two-layer sigmoid network (NumPy, float64).

Network (weights in the `nn.Linear` layout `(out, in)`, biases `(out,)`):

    h = sigmoid(x @ W1.T + b1)          x: (n, d_in)   W1: (d_h, d_in)   b1: (d_h,)   h: (n, d_h)
    y = sigmoid(h @ W2.T + b2)                         W2: (d_out, d_h)  b2: (d_out,) y: (n, d_out)
    L = sum((y - target)^2) / 2         summed over the batch and the outputs

Backward, with delta the gradient with respect to the pre-activations:

    delta2 = (y - target) * y * (1 - y)          (n, d_out)
    dW2 = delta2.T @ h,   db2 = sum_n delta2
    delta1 = (delta2 @ W2) * h * (1 - h)          (n, d_h)
    dW1 = delta1.T @ x,   db1 = sum_n delta1
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference.activations import sigmoid
from reference.losses import half_sum_squares

Array = NDArray[np.float64]


def forward(x: ArrayLike, W1: ArrayLike, b1: ArrayLike, W2: ArrayLike, b2: ArrayLike) -> tuple[Array, Array]:
    """Return (h, y): hidden activations (n, d_h) and outputs (n, d_out) of the network above."""
    x = np.asarray(x, dtype=np.float64)
    h = sigmoid(x @ np.asarray(W1, dtype=np.float64).T + np.asarray(b1, dtype=np.float64))
    y = sigmoid(h @ np.asarray(W2, dtype=np.float64).T + np.asarray(b2, dtype=np.float64))
    return h, y


def forward_backward(
    x: ArrayLike, target: ArrayLike, W1: ArrayLike, b1: ArrayLike, W2: ArrayLike, b2: ArrayLike
) -> dict[str, float | Array]:
    """Return {"loss": L, "W1": dL/dW1, "b1": dL/db1, "W2": dL/dW2, "b2": dL/db2}, each like its param."""
    x = np.asarray(x, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    h, y = forward(x, W1, b1, W2, b2)
    loss, dy = half_sum_squares(y, target)
    delta2 = dy * y * (1.0 - y)
    delta1 = (delta2 @ W2) * h * (1.0 - h)
    return {
        "loss": loss,
        "W1": delta1.T @ x,
        "b1": delta1.sum(axis=0),
        "W2": delta2.T @ h,
        "b2": delta2.sum(axis=0),
    }
