"""reference.activations against PyTorch: values against torch functions, derivatives against autograd."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference import activations as A

RNG = np.random.default_rng(0)
SHAPES = [(7,), (4, 5), (2, 3, 4)]


def _autograd_elementwise(fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray) -> np.ndarray:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(t).sum().backward()
    assert t.grad is not None
    return t.grad.numpy()


CASES = [
    (A.sigmoid, A.sigmoid_grad, torch.sigmoid),
    (A.tanh, A.tanh_grad, torch.tanh),
    (A.relu, A.relu_grad, torch.relu),
    (lambda x: A.leaky_relu(x), lambda x: A.leaky_relu_grad(x), lambda t: F.leaky_relu(t, 0.01)),
    (
        lambda x: A.leaky_relu(x, alpha=0.2),
        lambda x: A.leaky_relu_grad(x, alpha=0.2),
        lambda t: F.leaky_relu(t, 0.2),
    ),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("f", "df", "tf"), CASES)
def test_elementwise_value_and_derivative_match_torch(f, df, tf, shape) -> None:  # type: ignore[no-untyped-def]
    x = RNG.normal(scale=3.0, size=shape)
    expected = tf(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(f(x), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(df(x), _autograd_elementwise(tf, x), rtol=1e-12, atol=1e-15)
    assert f(x).shape == shape and df(x).shape == shape


def test_left_derivative_at_zero_matches_torch() -> None:
    x = np.array([-1.0, 0.0, 1.0])
    assert A.relu_grad(x).tolist() == [0.0, 0.0, 1.0]
    assert A.relu_grad(x).tolist() == _autograd_elementwise(torch.relu, x).tolist()
    assert A.leaky_relu_grad(x, alpha=0.2).tolist() == [0.2, 0.2, 1.0]
    assert (
        A.leaky_relu_grad(x, alpha=0.2).tolist()
        == _autograd_elementwise(lambda t: F.leaky_relu(t, 0.2), x).tolist()
    )


def test_sigmoid_is_finite_and_silent_at_extremes() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = A.sigmoid(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]))
    np.testing.assert_allclose(
        s, torch.sigmoid(torch.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=torch.float64))
    )


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_torch(axis: int) -> None:
    x = RNG.normal(scale=3.0, size=(4, 6))
    expected = torch.softmax(torch.tensor(x), dim=axis).numpy()
    np.testing.assert_allclose(A.softmax(x, axis=axis), expected, rtol=1e-12, atol=1e-15)


def test_softmax_stays_finite_at_plus_minus_1000() -> None:
    x = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -999.0, -1000.0]])
    with np.errstate(over="raise", invalid="raise"):
        s = A.softmax(x)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s, torch.softmax(torch.tensor(x), dim=-1).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(A.softmax(np.zeros((3, 4))), np.full((3, 4), 0.25))


def test_softmax_jacobian_matches_autograd() -> None:
    x = RNG.normal(size=(3, 5))
    jac = A.softmax_jacobian(x)
    assert jac.shape == (3, 5, 5)
    for row in range(3):
        expected = torch.autograd.functional.jacobian(
            lambda t: torch.softmax(t, dim=-1), torch.tensor(x[row])
        )
        np.testing.assert_allclose(jac[row], expected.numpy(), rtol=1e-12, atol=1e-15)
