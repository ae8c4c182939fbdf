"""The course's optimizers (NumPy, float64): `Opt(params, lr, ...)`, `step(grads)` updates in place.

`params` is a list of arrays that `step` changes in place; `grads` is a list of arrays of the same
shapes. Each instance keeps its own state (one slot per parameter).

How they relate to `torch.optim` (tests/reference/test_optimizers.py checks each statement):

- SGD: `w -= lr * g`, identical to `torch.optim.SGD(lr=lr)`.
- Momentum: the course's exponentially weighted average `s_1 = g_1`,
  `s_t = beta * s_{t-1} + (1 - beta) * g_t`, `w -= lr * s_t`. torch's default momentum is
  `b_t = mu * b_{t-1} + g_t` (dampening 0), whose steps grow to about 1 / (1 - beta) times larger, so
  it differs from step 2 on. The course's form equals `torch.optim.SGD(lr, momentum=beta,
  dampening=beta)`: torch also starts its buffer at `b_1 = g_1`, then adds `(1 - dampening) * g_t`.
- AdaGrad: `s += g^2`, `w -= lr * g / (sqrt(s) + eps)`: identical to `torch.optim.Adagrad(lr,
  eps=eps)` (lr_decay 0, initial accumulator 0); only the default eps differs (course 1e-6, torch
  1e-10), which changes the steps wherever sqrt(s) is small.
- RMSProp: `s = beta * s + (1 - beta) * g^2` from `s_0 = 0`, `w -= lr * g / (sqrt(s) + eps)`:
  identical to `torch.optim.RMSprop(lr, alpha=beta, eps=eps)` (not centered, no momentum); the
  defaults differ (course beta 0.9, eps 1e-6; torch alpha 0.99, eps 1e-8).
- Adam: bias-corrected, identical to `torch.optim.Adam` with the same defaults:
  `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`, `m^ = m / (1 - b1^t)`, `v^ = v / (1 - b2^t)`,
  `w -= lr * m^ / (sqrt(v^) + eps)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


class Optimizer:
    """Base class: holds the parameter list and the learning rate."""

    def __init__(self, params: Sequence[Array], lr: float) -> None:
        self.params = list(params)
        self.lr = float(lr)

    def step(self, grads: Sequence[Array]) -> None:
        """Update every parameter in place from its gradient."""
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            p -= self._update(i, np.asarray(g, dtype=np.float64))

    def _update(self, i: int, g: Array) -> Array:
        raise NotImplementedError


class SGD(Optimizer):
    """w -= lr * g."""

    def _update(self, i: int, g: Array) -> Array:
        return self.lr * g


class Momentum(Optimizer):
    """s_1 = g_1, s_t = beta * s_{t-1} + (1 - beta) * g_t, w -= lr * s_t."""

    def __init__(self, params: Sequence[Array], lr: float, beta: float = 0.9) -> None:
        super().__init__(params, lr)
        self.beta = float(beta)
        self.s: list[Array | None] = [None] * len(self.params)

    def _update(self, i: int, g: Array) -> Array:
        prev = self.s[i]
        s = g.copy() if prev is None else self.beta * prev + (1.0 - self.beta) * g
        self.s[i] = s
        return self.lr * s


class AdaGrad(Optimizer):
    """s += g^2, w -= lr * g / (sqrt(s) + eps)."""

    def __init__(self, params: Sequence[Array], lr: float, eps: float = 1e-6) -> None:
        super().__init__(params, lr)
        self.eps = float(eps)
        self.s = [np.zeros_like(p, dtype=np.float64) for p in self.params]

    def _update(self, i: int, g: Array) -> Array:
        self.s[i] = self.s[i] + g * g
        return self.lr * g / (np.sqrt(self.s[i]) + self.eps)


class RMSProp(Optimizer):
    """s = beta * s + (1 - beta) * g^2 (s_0 = 0), w -= lr * g / (sqrt(s) + eps)."""

    def __init__(self, params: Sequence[Array], lr: float, beta: float = 0.9, eps: float = 1e-6) -> None:
        super().__init__(params, lr)
        self.beta = float(beta)
        self.eps = float(eps)
        self.s = [np.zeros_like(p, dtype=np.float64) for p in self.params]

    def _update(self, i: int, g: Array) -> Array:
        self.s[i] = self.beta * self.s[i] + (1.0 - self.beta) * g * g
        return self.lr * g / (np.sqrt(self.s[i]) + self.eps)


class Adam(Optimizer):
    """m, v moving averages of g and g^2, bias-corrected by 1 - beta^t; w -= lr * m^ / (sqrt(v^) + eps)."""

    def __init__(
        self,
        params: Sequence[Array],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.m = [np.zeros_like(p, dtype=np.float64) for p in self.params]
        self.v = [np.zeros_like(p, dtype=np.float64) for p in self.params]
        self.t = 0

    def step(self, grads: Sequence[Array]) -> None:
        """Advance the step counter t once, then update every parameter in place."""
        self.t += 1
        super().step(grads)

    def _update(self, i: int, g: Array) -> Array:
        self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g
        self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g
        m_hat = self.m[i] / (1.0 - self.beta1**self.t)
        v_hat = self.v[i] / (1.0 - self.beta2**self.t)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Momentum, AdaGrad, RMSProp, Adam)
}
