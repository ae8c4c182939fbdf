"""reference.losses against PyTorch losses and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference.losses import half_sum_squares, softmax_cross_entropy

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("shape", [(5,), (4, 3)])
def test_half_sum_squares_matches_torch(shape: tuple[int, ...]) -> None:
    y, target = RNG.normal(size=shape), RNG.normal(size=shape)
    ty = torch.tensor(y, requires_grad=True)
    tl = F.mse_loss(ty, torch.tensor(target), reduction="sum") / 2
    tl.backward()
    loss, grad = half_sum_squares(y, target)
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    assert ty.grad is not None
    np.testing.assert_allclose(grad, ty.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(("n", "k", "scale"), [(5, 4, 1.0), (8, 10, 3.0), (2, 3, 1000.0)])
def test_softmax_cross_entropy_matches_torch(n: int, k: int, scale: float) -> None:
    logits = RNG.normal(scale=scale, size=(n, k))
    labels = RNG.integers(0, k, size=n)
    tz = torch.tensor(logits, requires_grad=True)
    tl = F.cross_entropy(tz, torch.tensor(labels))
    tl.backward()
    loss, grad = softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    assert tz.grad is not None
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_softmax_cross_entropy_of_zero_logits_is_log_k() -> None:
    loss, grad = softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2]))
    assert loss == pytest.approx(np.log(3))
    np.testing.assert_allclose(grad, [[-1 / 3, 1 / 6, 1 / 6], [1 / 6, 1 / 6, -1 / 3]])
