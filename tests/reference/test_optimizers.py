"""reference.optimizers against torch.optim where the definitions coincide, and where they differ."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from reference.optimizers import SGD, AdaGrad, Adam, Momentum, Optimizer, RMSProp

SHAPES = [(3,), (2, 4), (5,)]
STEPS = 50


def _problem(seed: int, grad_scale: float = 1.0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    grads = [[grad_scale * rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _run_reference(make: Callable[[list[np.ndarray]], Optimizer], params, grads) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    ps = [p.copy() for p in params]
    opt = make(ps)
    for g in grads:
        opt.step(g)
    return ps


def _run_torch(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], params, grads
) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make(ts)
    for g in grads:
        for t, gi in zip(ts, g, strict=True):
            t.grad = torch.tensor(gi)
        opt.step()
    return [t.detach().numpy() for t in ts]


def _close(a: list[np.ndarray], b: list[np.ndarray], rtol: float = 1e-10) -> bool:
    return all(np.allclose(x, y, rtol=rtol, atol=1e-12) for x, y in zip(a, b, strict=True))


COINCIDE = [
    ("SGD", lambda p: SGD(p, lr=0.1), lambda t: torch.optim.SGD(t, lr=0.1)),
    (
        "Momentum = SGD(momentum=beta, dampening=beta)",
        lambda p: Momentum(p, lr=0.1, beta=0.9),
        lambda t: torch.optim.SGD(t, lr=0.1, momentum=0.9, dampening=0.9),
    ),
    ("AdaGrad", lambda p: AdaGrad(p, lr=0.5), lambda t: torch.optim.Adagrad(t, lr=0.5, eps=1e-6)),
    (
        "RMSProp",
        lambda p: RMSProp(p, lr=0.01),
        lambda t: torch.optim.RMSprop(t, lr=0.01, alpha=0.9, eps=1e-6),
    ),
    ("Adam", lambda p: Adam(p, lr=0.01), lambda t: torch.optim.Adam(t, lr=0.01)),
    (
        "Adam custom",
        lambda p: Adam(p, lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6),
        lambda t: torch.optim.Adam(t, lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    ),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), COINCIDE, ids=[c[0] for c in COINCIDE])
def test_matches_torch_where_definitions_coincide(name: str, ours, theirs) -> None:  # type: ignore[no-untyped-def]
    params, grads = _problem(0)
    assert _close(_run_reference(ours, params, grads), _run_torch(theirs, params, grads))


def test_course_momentum_differs_from_torch_default_momentum_from_step_two() -> None:
    params, grads = _problem(1)
    course = lambda p: Momentum(p, lr=0.1, beta=0.9)  # noqa: E731
    torch_default = lambda t: torch.optim.SGD(t, lr=0.1, momentum=0.9)  # noqa: E731
    # Both start with s_1 = g_1 ...
    assert _close(_run_reference(course, params, grads[:1]), _run_torch(torch_default, params, grads[:1]))
    # ... then torch adds the full g_t (b = 0.9 b + g), the course adds (1 - beta) g_t.
    assert not _close(
        _run_reference(course, params, grads[:2]), _run_torch(torch_default, params, grads[:2]), 1e-3
    )
    # Torch's form equals the course's with steps scaled by 1/(1 - beta) in the long run: a constant
    # gradient makes torch's buffer tend to 10 g while the course's stays g.
    g = [np.ones(s) for s in SHAPES]
    p0 = [np.zeros(s) for s in SHAPES]
    ours = _run_reference(course, p0, [g] * 200)
    theirs = _run_torch(torch_default, p0, [g] * 200)
    assert ours[0][0] == pytest.approx(-0.1 * 200)
    assert theirs[0][0] < 8 * ours[0][0]


def test_course_adagrad_differs_from_torch_default_eps() -> None:
    params, grads = _problem(2, grad_scale=1e-5)
    ours = _run_reference(lambda p: AdaGrad(p, lr=0.5), params, grads)
    assert _close(ours, _run_torch(lambda t: torch.optim.Adagrad(t, lr=0.5, eps=1e-6), params, grads))
    assert not _close(ours, _run_torch(lambda t: torch.optim.Adagrad(t, lr=0.5), params, grads), 1e-3)


def test_course_rmsprop_differs_from_torch_defaults() -> None:
    params, grads = _problem(3)
    ours = _run_reference(lambda p: RMSProp(p, lr=0.01), params, grads)
    assert _close(
        ours, _run_torch(lambda t: torch.optim.RMSprop(t, lr=0.01, alpha=0.9, eps=1e-6), params, grads)
    )
    # torch's default alpha is 0.99 (course beta 0.9), its default eps 1e-8 (course 1e-6).
    assert not _close(ours, _run_torch(lambda t: torch.optim.RMSprop(t, lr=0.01), params, grads), 1e-3)
    assert not _close(
        ours, _run_torch(lambda t: torch.optim.RMSprop(t, lr=0.01, alpha=0.9), params, grads), 1e-6
    )


def test_momentum_first_step_is_plain_sgd() -> None:
    p = [np.array([1.0, -2.0])]
    Momentum(p, lr=0.1, beta=0.9).step([np.array([0.5, -1.0])])
    np.testing.assert_allclose(p[0], [0.95, -1.9])


def test_instances_do_not_share_state_and_update_in_place() -> None:
    a, b = [np.zeros(3)], [np.zeros(3)]
    ids = (id(a[0]), id(b[0]))
    opt_a, opt_b = Adam(a, lr=0.1), Adam(b, lr=0.1)
    for _ in range(3):
        opt_a.step([np.ones(3)])
    opt_b.step([np.ones(3)])
    solo = [np.zeros(3)]
    Adam(solo, lr=0.1).step([np.ones(3)])
    np.testing.assert_allclose(b[0], solo[0])
    assert (id(a[0]), id(b[0])) == ids
