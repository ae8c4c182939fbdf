"""Dropout and batch normalisation as the course states them (NumPy, float64)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def dropout(
    x: ArrayLike,
    p: float,
    *,
    training: bool = True,
    mask: ArrayLike | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[Array, Array]:
    """Inverted dropout: y = x * m / (1 - p) with m ~ Bernoulli(1 - p) kept; identity when not training.

    x: any shape -> (y, m), both shaped like x; m is 1 where x is kept, 0 where dropped. `mask` fixes
    m (to reproduce another implementation's draw); otherwise it is drawn from `rng`. Scaling by
    1 / (1 - p) keeps E[y] = x, so nothing changes at test time.
    """
    x = np.asarray(x, dtype=np.float64)
    if not 0.0 <= p < 1.0:
        if p == 1.0 and training:
            return np.zeros_like(x), np.zeros_like(x)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x.copy(), np.ones_like(x)
    if mask is None:
        rng = rng if rng is not None else np.random.default_rng()
        m = (rng.random(x.shape) >= p).astype(np.float64)
    else:
        m = np.asarray(mask, dtype=np.float64)
    return x * m / (1.0 - p), m


def dropout_grad(dy: ArrayLike, mask: ArrayLike, p: float) -> Array:
    """dL/dx = dL/dy * m / (1 - p); dy and mask shaped like x."""
    return np.asarray(dy, dtype=np.float64) * np.asarray(mask, dtype=np.float64) / (1.0 - p)


def batchnorm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, eps: float = 1e-5
) -> tuple[Array, Array, Array]:
    """Training-mode batch norm over axis 0: y = gamma * (x - mu) / sqrt(var + eps) + beta.

    x: (n, c); gamma, beta: (c,) -> (y (n, c), mu (c,), var (c,)), var the biased batch variance
    (divide by n), which is what normalises the batch.
    """
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    y = np.asarray(gamma, dtype=np.float64) * (x - mu) / np.sqrt(var + eps) + np.asarray(
        beta, dtype=np.float64
    )
    return y, mu, var


def batchnorm_running_update(
    running_mean: ArrayLike, running_var: ArrayLike, x: ArrayLike, momentum: float = 0.1
) -> tuple[Array, Array]:
    """running = (1 - momentum) * running + momentum * batch statistic, per channel.

    x: (n, c); running_mean, running_var: (c,) -> new (running_mean, running_var). The variance folded
    into running_var is the unbiased one (divide by n - 1), as `nn.BatchNorm1d` does, although the
    batch itself is normalised with the biased one. Note torch's `momentum` weights the new batch
    (0.1 by default): the "0.9 old + 0.1 new" form.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    mu = x.mean(axis=0)
    var_unbiased = x.var(axis=0) * n / (n - 1)
    new_mean = (1.0 - momentum) * np.asarray(running_mean, dtype=np.float64) + momentum * mu
    new_var = (1.0 - momentum) * np.asarray(running_var, dtype=np.float64) + momentum * var_unbiased
    return new_mean, new_var


def batchnorm_eval(
    x: ArrayLike,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    eps: float = 1e-5,
) -> Array:
    """Eval-mode batch norm: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta; x (n, c)."""
    x = np.asarray(x, dtype=np.float64)
    rm = np.asarray(running_mean, dtype=np.float64)
    rv = np.asarray(running_var, dtype=np.float64)
    return np.asarray(gamma, dtype=np.float64) * (x - rm) / np.sqrt(rv + eps) + np.asarray(
        beta, dtype=np.float64
    )
