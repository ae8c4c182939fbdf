"""reference.regularization against nn.Dropout and nn.BatchNorm1d."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reference.regularization import (
    batchnorm_eval,
    batchnorm_forward,
    batchnorm_running_update,
    dropout,
    dropout_grad,
)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_reproduces_nn_dropout_given_its_mask(p: float) -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(64, 32))  # nonzero, so the mask is visible
    layer = nn.Dropout(p)
    tx = torch.tensor(x, requires_grad=True)
    ty = layer(tx)
    mask = (ty.detach().numpy() != 0).astype(np.float64)
    y, m = dropout(x, p, mask=mask)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    # Survivors are scaled by 1 / (1 - p), never anything else.
    np.testing.assert_allclose(y[m == 1] / x[m == 1], 1 / (1 - p))
    ty.sum().backward()
    assert tx.grad is not None
    np.testing.assert_allclose(dropout_grad(np.ones_like(x), m, p), tx.grad.numpy(), rtol=1e-12)
    layer.eval()
    np.testing.assert_array_equal(dropout(x, p, training=False)[0], layer(torch.tensor(x)).numpy())


def test_dropout_keeps_the_expectation() -> None:
    x = np.ones((200, 500))
    y, m = dropout(x, 0.3, rng=np.random.default_rng(0))
    assert abs(m.mean() - 0.7) < 0.01
    assert abs(y.mean() - 1.0) < 0.02


def test_batchnorm_matches_nn_batchnorm1d_over_several_batches() -> None:
    rng = np.random.default_rng(0)
    c = 5
    bn = nn.BatchNorm1d(c, momentum=0.1).double()
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    rm, rv = np.zeros(c), np.ones(c)
    for _ in range(4):
        x = rng.normal(loc=2.0, scale=3.0, size=(16, c))
        ty = bn(torch.tensor(x))
        y, _, _ = batchnorm_forward(x, gamma, beta, eps=bn.eps)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        rm, rv = batchnorm_running_update(rm, rv, x, momentum=0.1)
        np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=1e-12)
    bn.eval()
    x = rng.normal(size=(3, c))
    np.testing.assert_allclose(
        batchnorm_eval(x, rm, rv, gamma, beta, eps=bn.eps), bn(torch.tensor(x)).detach().numpy(), rtol=1e-10
    )


def test_running_var_uses_the_unbiased_batch_variance() -> None:
    x = np.array([[0.0], [2.0]])
    _, rv = batchnorm_running_update(np.zeros(1), np.zeros(1), x, momentum=1.0)
    assert rv.tolist() == [2.0]  # biased variance would be 1.0
