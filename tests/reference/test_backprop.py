"""reference.backprop against autograd on nn.Linear, and the course's worked example."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reference.backprop import forward_backward
from reference.optimizers import SGD

WORKED = {
    "x": np.array([[0.05, 0.10]]),
    "target": np.array([[0.01, 0.99]]),
    "W1": np.array([[0.15, 0.20], [0.25, 0.30]]),
    "b1": np.array([0.35, 0.35]),
    "W2": np.array([[0.40, 0.45], [0.50, 0.55]]),
    "b2": np.array([0.60, 0.60]),
}


class CourseNet(nn.Module):
    """The course's network: Linear -> sigmoid -> Linear -> sigmoid."""

    def __init__(self, d_in: int, d_h: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_h)
        self.linear2 = nn.Linear(d_h, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear2(torch.sigmoid(self.linear1(x))))


def _torch_net(W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray) -> CourseNet:
    net = CourseNet(W1.shape[1], W1.shape[0], W2.shape[0]).double()
    with torch.no_grad():
        net.linear1.weight.copy_(torch.tensor(W1))
        net.linear1.bias.copy_(torch.tensor(b1))
        net.linear2.weight.copy_(torch.tensor(W2))
        net.linear2.bias.copy_(torch.tensor(b2))
    return net


def _torch_loss(net: CourseNet, x: np.ndarray, target: np.ndarray) -> torch.Tensor:
    return ((net(torch.tensor(x)) - torch.tensor(target)) ** 2).sum() / 2


@pytest.mark.parametrize(("n", "d_in", "d_h", "d_out"), [(1, 2, 2, 2), (4, 3, 5, 2), (8, 6, 4, 3)])
def test_forward_backward_matches_autograd(n: int, d_in: int, d_h: int, d_out: int) -> None:
    rng = np.random.default_rng(n)
    x, target = rng.normal(size=(n, d_in)), rng.uniform(size=(n, d_out))
    W1, b1 = rng.normal(size=(d_h, d_in)), rng.normal(size=d_h)
    W2, b2 = rng.normal(size=(d_out, d_h)), rng.normal(size=d_out)
    net = _torch_net(W1, b1, W2, b2)
    loss = _torch_loss(net, x, target)
    loss.backward()
    got = forward_backward(x, target, W1, b1, W2, b2)
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-12)
    for key, param in [
        ("W1", net.linear1.weight),
        ("b1", net.linear1.bias),
        ("W2", net.linear2.weight),
        ("b2", net.linear2.bias),
    ]:
        assert param.grad is not None
        assert got[key].shape == param.shape
        np.testing.assert_allclose(got[key], param.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_worked_example_loss_and_gradients_as_the_course_prints_them() -> None:
    got = forward_backward(**WORKED)
    assert round(got["loss"], 4) == 0.2984
    assert np.round(got["W1"], 4).tolist() == [[0.0004, 0.0009], [0.0005, 0.0010]]
    assert np.round(got["W2"], 4).tolist() == [[0.0822, 0.0827], [-0.0226, -0.0227]]
    assert np.round(got["b1"], 4).tolist() == [0.0088, 0.0100]
    assert np.round(got["b2"], 4).tolist() == [0.1385, -0.0381]


def test_worked_example_one_sgd_step_reproduces_the_course() -> None:
    """The course runs optim.SGD(model.parameters(), lr=0.5) once and prints the parameters."""
    got = forward_backward(**WORKED)
    params = [WORKED[k].copy() for k in ("W1", "b1", "W2", "b2")]
    SGD(params, lr=0.5).step([got[k] for k in ("W1", "b1", "W2", "b2")])
    course = {
        "linear1.weight": [[0.1498, 0.1996], [0.2498, 0.2995]],
        "linear1.bias": [0.3456, 0.3450],
        "linear2.weight": [[0.3589, 0.4087], [0.5113, 0.5614]],
        "linear2.bias": [0.5308, 0.6190],
    }
    for (name, printed), p in zip(course.items(), params, strict=True):
        assert np.round(p, 4).tolist() == printed, name

    net = _torch_net(*(WORKED[k] for k in ("W1", "b1", "W2", "b2")))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    opt.zero_grad()
    _torch_loss(net, WORKED["x"], WORKED["target"]).backward()
    opt.step()
    for (name, tp), p in zip(net.named_parameters(), params, strict=True):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, err_msg=name)
