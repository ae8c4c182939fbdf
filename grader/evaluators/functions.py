"""Evaluator for the function homework: `activations`, `backprop`, `optimizers`.

`prepare()` plans the calls the in-sandbox harness (grader/harness/functions.py) makes on the
student's module, with inputs drawn from a fixed seed per assignment (every submission gets the same
inputs, so the same zip always gives the same report), and computes the expected values with
`reference`. `score()` compares what came back at rtol 1e-6 / atol 1e-8 with equal shapes (a
size-1 array is accepted for a scalar), one `CheckResult` per named check.

Checks (each check is one call or one optimizer run; a check with several outputs passes when all do):

- activations (29): for sigmoid, sigmoid_grad, tanh, tanh_grad, relu, leaky_relu:
  "<f>: zeros", "<f>: random 1-D", "<f>: random 2-D" (leaky_*: "random 2-D, alpha=0.2", the keyword
  passed); relu_grad and leaky_relu_grad replace "zeros" with "<f>: at 0 (left derivative)";
  softmax: "zeros", "random 1-D", "random 2-D", "axis=0", "±1000 stays finite".
- backprop (28): forward_backward on "worked example", "zero weights", "random batch of 4", "random
  batch of 8", one check per output: "forward_backward: <case>, <loss|dW1|db1|dW2|db2>";
  softmax_cross_entropy on "zeros", "random (5, 4)", "random (8, 10)", "±1000 stays finite", one
  check per output: "softmax_cross_entropy: <case>, <loss|dlogits>".
- optimizers (27): for SGD, Momentum, AdaGrad, RMSProp, Adam: "<C>: two steps on a small fixed
  case", "<C>: several parameter tensors" (3 tensors, 5 steps), "<C>: 50-step trajectory",
  "<C>: two instances do not share state" (interleaved steps); except SGD "<C>: custom
  hyperparameters" (non-default keywords); AdaGrad, RMSProp, Adam "<C>: small gradients (eps
  matters)" (gradients ~1e-6, where eps's place and default show). Every parameter after every
  step is compared; lr is passed positionally, the rest by keyword.

Hints name well-known mistakes by computing their outputs too and matching what came back
(torch-style momentum, Adam without bias correction, eps inside the square root, naive softmax
overflowing, transposed weight layout, relu_grad(0) == 1, mean instead of sum, sigmoid_grad taking
sigmoid(x), not updating in place).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.assignments import AssignmentSpec
from grader.evaluators.base import HarnessOutput, Prepared, Scored, describe_stage
from grader.report import CheckResult, ErrorCode, GradeError, Message
from reference import activations as ref_act
from reference import optimizers as ref_opt
from reference.backprop import forward_backward
from reference.losses import softmax_cross_entropy

RTOL = 1e-6
ATOL = 1e-8
SEEDS = {"activations": 20240301, "backprop": 20240302, "optimizers": 20240303}
MODULES = {"activations": "activations.py", "backprop": "backprop.py", "optimizers": "optimizers.py"}

SIGNATURES = {
    "sigmoid": "sigmoid(x)",
    "sigmoid_grad": "sigmoid_grad(x)",
    "tanh": "tanh(x)",
    "tanh_grad": "tanh_grad(x)",
    "relu": "relu(x)",
    "relu_grad": "relu_grad(x)",
    "leaky_relu": "leaky_relu(x, alpha=0.01)",
    "leaky_relu_grad": "leaky_relu_grad(x, alpha=0.01)",
    "softmax": "softmax(x, axis=-1)",
    "forward_backward": "forward_backward(x, target, W1, b1, W2, b2) -> dict",
    "softmax_cross_entropy": "softmax_cross_entropy(logits, labels) -> (loss, dlogits)",
    "SGD": "class SGD: __init__(self, params, lr); step(self, grads)",
    "Momentum": "class Momentum: __init__(self, params, lr, beta=0.9); step(self, grads)",
    "AdaGrad": "class AdaGrad: __init__(self, params, lr, eps=1e-6); step(self, grads)",
    "RMSProp": "class RMSProp: __init__(self, params, lr, beta=0.9, eps=1e-6); step(self, grads)",
    "Adam": "class Adam: __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8); step(self, grads)",
}


# --------------------------------------------------------------------------- plan (trusted side)


@dataclass
class _Variant:
    """The output a known mistake would produce, and the hint that names it."""

    expected: np.ndarray
    hint: Message


@dataclass
class _Part:
    key: str
    label: str
    expected: np.ndarray
    label_zh: str = ""
    variants: list[_Variant] = field(default_factory=list)
    # For elementwise functions: the input, so a failure can show one offending element.
    elementwise_x: np.ndarray | None = None
    trajectory: bool = False


@dataclass
class _Check:
    name: str
    func: str
    op: str
    call: str
    input: Any
    parts: list[_Part]
    hint: Message | None = None
    # The "two instances" check: a failure while every other check of the class passes means shared state.
    isolation: bool = False
    nonfinite_hint: Message | None = None
    error_hints: list[tuple[re.Pattern[str], Message]] = field(default_factory=list)


@dataclass
class _State:
    kind: str
    module: str
    checks: list[_Check]


class _Plan:
    """Accumulates input arrays, harness ops and checks for one assignment."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rng = np.random.default_rng(SEEDS[kind])
        self.inputs: dict[str, np.ndarray] = {}
        self.ops: list[dict[str, Any]] = []
        self.checks: list[_Check] = []

    def array(self, a: np.ndarray) -> str:
        name = f"x{len(self.inputs)}"
        self.inputs[name] = np.array(a, copy=True)
        return name

    def _arg(self, v: Any) -> dict[str, Any]:
        if isinstance(v, np.ndarray):
            return {"array": self.array(v)}
        return {"value": v}

    def call(self, func: str, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> str:
        oid = f"c{len(self.ops)}"
        self.ops.append(
            {
                "op": "call",
                "id": oid,
                "func": func,
                "args": [self._arg(a) for a in args],
                "kwargs": {k: self._arg(v) for k, v in (kwargs or {}).items()},
            }
        )
        return oid

    def optimizer(
        self,
        cls: str,
        instances: list[tuple[list[np.ndarray], float, dict[str, float]]],
        steps: list[tuple[int, list[np.ndarray]]],
    ) -> str:
        oid = f"o{len(self.ops)}"
        self.ops.append(
            {
                "op": "optimizer",
                "id": oid,
                "instances": [
                    {
                        "cls": cls,
                        "params": [self.array(p) for p in params],
                        "args": [{"value": lr}],
                        "kwargs": {k: {"value": v} for k, v in kw.items()},
                    }
                    for params, lr, kw in instances
                ],
                "steps": [{"instance": i, "grads": [self.array(g) for g in grads]} for i, grads in steps],
            }
        )
        return oid

    def job(self) -> dict[str, Any]:
        return {"kind": "functions", "module": MODULES[self.kind], "ops": self.ops}


def call_budget_s(timeout_s: float, n_ops: int) -> float:
    """How long one harness op (a function call, an optimizer's run) may take before it alone fails,
    so that one endless or very slow function fails only its own checks: the run's time limit shared
    among its ops with room to spare (the import, the rest), between 0.5 and 10 s. The checks' inputs
    are small; a correct function returns in microseconds to milliseconds."""
    return min(10.0, max(0.5, timeout_s / (n_ops + 2)))


def _m(en: str, zh: str) -> Message:
    return Message(en=en, zh=zh)


_SHAPE_ERROR = re.compile(r"shape|align|broadcast|mat1|matmul|size of|dimension", re.IGNORECASE)
_KWARG_ERROR = re.compile(r"unexpected keyword argument|positional argument", re.IGNORECASE)

# ------------------------------------------------------------------------------------ activations


def _plan_activations(plan: _Plan) -> None:
    rng = plan.rng
    elementwise: dict[str, Callable[..., np.ndarray]] = {
        "sigmoid": ref_act.sigmoid,
        "sigmoid_grad": ref_act.sigmoid_grad,
        "tanh": ref_act.tanh,
        "tanh_grad": ref_act.tanh_grad,
        "relu": ref_act.relu,
        "relu_grad": ref_act.relu_grad,
        "leaky_relu": ref_act.leaky_relu,
        "leaky_relu_grad": ref_act.leaky_relu_grad,
    }
    for name, f in elementwise.items():
        leaky = name.startswith("leaky")
        first: tuple[str, np.ndarray] = (
            ("at 0 (left derivative)", np.array([-2.0, -0.5, 0.0, 0.5, 2.0]))
            if name.endswith("relu_grad")
            else ("zeros", np.zeros((2, 3)))
        )
        cases: list[tuple[str, np.ndarray, dict[str, Any]]] = [
            (first[0], first[1], {}),
            ("random 1-D", rng.normal(scale=3.0, size=7), {}),
            ("random 2-D, alpha=0.2" if leaky else "random 2-D", rng.normal(scale=3.0, size=(4, 5)), {}),
        ]
        if leaky:
            cases[2] = (cases[2][0], cases[2][1], {"alpha": 0.2})
        for case, x, kw in cases:
            expected = f(x, **kw)
            oid = plan.call(name, [x], kw)
            plan.checks.append(
                _Check(
                    name=f"{name}: {case}",
                    func=name,
                    op=oid,
                    call=f"{name}(x{', alpha=0.2' if kw else ''})",
                    input=_input_display({"x": x, **kw}),
                    parts=[
                        _Part(
                            key=oid,
                            label=name,
                            expected=expected,
                            variants=_activation_variants(name, x, kw),
                            elementwise_x=x,
                        )
                    ],
                    error_hints=[(_KWARG_ERROR, _signature_hint(name))],
                )
            )

    overflow = _m(
        "softmax overflowed: exp(1000) is inf in float64. Subtract the maximum along the axis first, "
        "e = np.exp(x - x.max(axis=axis, keepdims=True)); the result is the same and stays finite.",
        "softmax 溢出了：float64 中 exp(1000) 为 inf。先减去该轴上的最大值，"
        "e = np.exp(x - x.max(axis=axis, keepdims=True))；结果不变且保持有限。",
    )
    softmax_cases: list[tuple[str, np.ndarray, dict[str, Any]]] = [
        ("zeros", np.zeros((3, 4)), {}),
        ("random 1-D", rng.normal(scale=3.0, size=6), {}),
        ("random 2-D", rng.normal(scale=3.0, size=(4, 5)), {}),
        ("axis=0", rng.normal(scale=3.0, size=(4, 5)), {"axis": 0}),
        ("±1000 stays finite", np.array([[1000.0, 999.0, -1000.0], [-1000.0, -999.0, -1000.0]]), {}),
        # A batch of sequences: the default axis is the last one whatever the rank (a softmax that
        # special-cases 1-D and 2-D, axis=1 say, is wrong here).
        ("random 3-D", rng.normal(scale=3.0, size=(2, 3, 4)), {}),
    ]
    for case, x, kw in softmax_cases:
        oid = plan.call("softmax", [x], kw)
        variants = []
        if x.ndim >= 2:
            whole = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
            variants.append(
                _Variant(
                    whole,
                    _m(
                        "softmax normalised over the whole array: sum along the given axis only, "
                        "np.sum(e, axis=axis, keepdims=True).",
                        "softmax 对整个数组做了归一化：应只沿给定的轴求和，np.sum(e, axis=axis, keepdims=True)。",
                    ),
                )
            )
            axis = kw.get("axis", -1) % x.ndim
            for other_axis in (a for a in range(x.ndim) if a != axis):
                variants.append(
                    _Variant(
                        ref_act.softmax(x, axis=other_axis),
                        _m(
                            f"softmax used the wrong axis ({other_axis} for a {x.ndim}-D input): use the `axis` "
                            f"argument (here {kw.get('axis', -1)}), default -1, the last axis whatever the rank "
                            "(each row sums to 1).",
                            f"softmax 用错了轴（{x.ndim} 维输入用了轴 {other_axis}）：请使用参数 `axis`"
                            f"（此处为 {kw.get('axis', -1)}），默认 -1，即无论几维都是最后一个轴（每行之和为 1）。",
                        ),
                    )
                )
        plan.checks.append(
            _Check(
                name=f"softmax: {case}",
                func="softmax",
                op=oid,
                call=f"softmax(x{', axis=0' if kw else ''})",
                input=_input_display({"x": x, **kw}),
                parts=[_Part(key=oid, label="softmax", expected=ref_act.softmax(x, **kw), variants=variants)],
                nonfinite_hint=overflow,
                error_hints=[(_KWARG_ERROR, _signature_hint("softmax"))],
            )
        )


def _activation_variants(name: str, x: np.ndarray, kw: dict[str, Any]) -> list[_Variant]:
    alpha = kw.get("alpha", 0.01)
    out: list[_Variant] = []
    if name == "sigmoid_grad":
        out.append(
            _Variant(
                x * (1 - x),
                _m(
                    "sigmoid_grad(x) computed x * (1 - x): it receives x, not sigmoid(x). "
                    "Compute s = sigmoid(x) first, then s * (1 - s).",
                    "sigmoid_grad(x) 计算成了 x * (1 - x)：参数是 x 而不是 sigmoid(x)。先算 s = sigmoid(x)，再返回 s * (1 - s)。",
                ),
            )
        )
    elif name == "tanh_grad":
        out.append(
            _Variant(
                1 - x * x,
                _m(
                    "tanh_grad(x) computed 1 - x**2: it receives x, not tanh(x). Return 1 - np.tanh(x)**2.",
                    "tanh_grad(x) 计算成了 1 - x**2：参数是 x 而不是 tanh(x)。应返回 1 - np.tanh(x)**2。",
                ),
            )
        )
    elif name == "relu_grad":
        out.append(
            _Variant(
                (x >= 0).astype(np.float64),
                _m(
                    "relu_grad(0) returned 1; the course takes the left derivative, relu_grad(0) == 0. "
                    "Use (x > 0), not (x >= 0).",
                    "relu_grad(0) 返回了 1；课程取左导数，relu_grad(0) == 0。请用 (x > 0) 而不是 (x >= 0)。",
                ),
            )
        )
    elif name == "leaky_relu_grad":
        out.append(
            _Variant(
                np.where(x >= 0, 1.0, alpha),
                _m(
                    "leaky_relu_grad(0) returned 1; the course takes the left derivative, "
                    "leaky_relu_grad(0) == alpha. Use np.where(x > 0, 1.0, alpha).",
                    "leaky_relu_grad(0) 返回了 1；课程取左导数，leaky_relu_grad(0) == alpha。"
                    "请用 np.where(x > 0, 1.0, alpha)。",
                ),
            )
        )
    if name.startswith("leaky") and "alpha" in kw:
        wrong = ref_act.leaky_relu(x) if name == "leaky_relu" else ref_act.leaky_relu_grad(x)
        out.append(
            _Variant(
                wrong,
                _m(
                    f"{name} ignored the alpha it was given (0.2) and used 0.01: use the `alpha` parameter.",
                    f"{name} 忽略了传入的 alpha（0.2），用了 0.01：请使用参数 `alpha`。",
                ),
            )
        )
    return out


# --------------------------------------------------------------------------------------- backprop

WORKED_EXAMPLE = {
    "x": np.array([[0.05, 0.10]]),
    "target": np.array([[0.01, 0.99]]),
    "W1": np.array([[0.15, 0.20], [0.25, 0.30]]),
    "b1": np.array([0.35, 0.35]),
    "W2": np.array([[0.40, 0.45], [0.50, 0.55]]),
    "b2": np.array([0.60, 0.60]),
}
_FB_KEYS = ("loss", "W1", "b1", "W2", "b2")
_FB_LABELS = {"loss": "loss", "W1": "dW1", "b1": "db1", "W2": "dW2", "b2": "db2"}


def _random_net(rng: np.random.Generator, n: int, d_in: int, d_h: int, d_out: int) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(size=(n, d_in)),
        "target": rng.uniform(size=(n, d_out)),
        "W1": rng.normal(scale=0.8, size=(d_h, d_in)),
        "b1": rng.normal(scale=0.5, size=d_h),
        "W2": rng.normal(scale=0.8, size=(d_out, d_h)),
        "b2": rng.normal(scale=0.5, size=d_out),
    }


def _plan_backprop(plan: _Plan) -> None:
    rng = plan.rng
    zero = _random_net(rng, 3, 3, 4, 2)
    for k in ("W1", "b1", "W2", "b2"):
        zero[k] = np.zeros_like(zero[k])
    cases = [
        ("worked example", WORKED_EXAMPLE),
        ("zero weights", zero),
        ("random batch of 4", _random_net(rng, 4, 3, 5, 2)),
        ("random batch of 8", _random_net(rng, 8, 6, 4, 3)),
    ]
    layout = _m(
        "Weights use the nn.Linear layout (out, in): the forward pass is x @ W1.T + b1 and dL/dW1 has "
        "W1's shape (out, in), i.e. delta1.T @ x.",
        "权重采用 nn.Linear 的布局 (out, in)：前向为 x @ W1.T + b1，dL/dW1 与 W1 形状相同 (out, in)，即 delta1.T @ x。",
    )
    for case, net in cases:
        args = [net[k] for k in ("x", "target", "W1", "b1", "W2", "b2")]
        expected = forward_backward(*args)
        variants = _backprop_variants(net, expected, layout)
        oid = plan.call("forward_backward", args)
        shown = _input_display(net)
        for key in _FB_KEYS:
            plan.checks.append(
                _Check(
                    name=f"forward_backward: {case}, {_FB_LABELS[key]}",
                    func="forward_backward",
                    op=oid,
                    call="forward_backward(x, target, W1, b1, W2, b2)",
                    input=shown,
                    parts=[
                        _Part(
                            key=f"{oid}.{key}",
                            label=f'result["{key}"]',
                            expected=np.asarray(expected[key], dtype=np.float64),
                            variants=variants.get(key, []),
                        )
                    ],
                    error_hints=[(_SHAPE_ERROR, layout), (_KWARG_ERROR, _signature_hint("forward_backward"))],
                )
            )

    k_big = np.array([[1000.0, -1000.0, 999.0], [-1000.0, 1000.0, -1000.0]])
    ce_cases = [
        ("zeros", np.zeros((2, 3)), np.array([0, 2])),
        ("random (5, 4)", rng.normal(scale=2.0, size=(5, 4)), rng.integers(0, 4, size=5)),
        ("random (8, 10)", rng.normal(scale=2.0, size=(8, 10)), rng.integers(0, 10, size=8)),
        ("±1000 stays finite", k_big, np.array([2, 0])),
    ]
    lse = _m(
        "softmax_cross_entropy overflowed: compute log-softmax as z - max(z) - log(sum(exp(z - max(z)))) "
        "row by row, never log(softmax) of exp(1000).",
        "softmax_cross_entropy 溢出了：按行计算 log-softmax = z - max(z) - log(sum(exp(z - max(z))))，"
        "不要对 exp(1000) 的结果取 log。",
    )
    for case, logits, labels in ce_cases:
        loss, grad = softmax_cross_entropy(logits, labels)
        n = logits.shape[0]
        oid = plan.call("softmax_cross_entropy", [logits, labels.astype(np.int64)])
        shown = _input_display({"logits": logits, "labels": labels.astype(np.int64)})
        mean_hint = _m(
            "The loss and dlogits are the mean over the batch: divide the summed loss and the gradient "
            "(softmax - onehot) by n.",
            "loss 和 dlogits 都是对批次取平均：把求和后的 loss 和梯度 (softmax - onehot) 都除以 n。",
        )
        for i, (label, exp_value) in enumerate((("loss", loss), ("dlogits", grad))):
            ce_variants = [_Variant(np.asarray(exp_value) * n, mean_hint)] if n > 1 else []
            plan.checks.append(
                _Check(
                    name=f"softmax_cross_entropy: {case}, {label}",
                    func="softmax_cross_entropy",
                    op=oid,
                    call="softmax_cross_entropy(logits, labels)",
                    input=shown,
                    parts=[
                        _Part(
                            key=f"{oid}.{i}",
                            label=f"{label} (item {i} of the returned tuple)",
                            label_zh=f"{label}（返回的元组的第 {i} 项）",
                            expected=np.asarray(exp_value, dtype=np.float64),
                            variants=ce_variants,
                        )
                    ],
                    nonfinite_hint=lse,
                    error_hints=[(_KWARG_ERROR, _signature_hint("softmax_cross_entropy"))],
                )
            )


def _backprop_variants(
    net: dict[str, np.ndarray], expected: dict[str, Any], layout: Message
) -> dict[str, list[_Variant]]:
    out: dict[str, list[_Variant]] = {k: [] for k in _FB_KEYS}
    n = net["x"].shape[0]
    square = net["W1"].shape[0] == net["W1"].shape[1] and net["W2"].shape[0] == net["W2"].shape[1]
    if square:
        # Treating W as (in, out): x @ W1 + b1. The gradient then comes out as x.T @ delta, W's transpose.
        t = forward_backward(net["x"], net["target"], net["W1"].T, net["b1"], net["W2"].T, net["b2"])
        for k in _FB_KEYS:
            value = np.asarray(t[k])
            out[k].append(_Variant(value.T if k in ("W1", "W2") else value, layout))
    if n > 1:
        mean = _m(
            "L is summed over the batch, L = sum((y - target)**2) / 2, not averaged: do not divide by n.",
            "L 对整个批次求和，L = sum((y - target)**2) / 2，不取平均：不要除以 n。",
        )
        for k in _FB_KEYS:
            out[k].append(_Variant(np.asarray(expected[k]) / n, mean))
    half = _m(
        "L has the factor 1/2, L = sum((y - target)**2) / 2, so dL/dy = y - target (not 2 * (y - target)).",
        "L 带有系数 1/2，L = sum((y - target)**2) / 2，因此 dL/dy = y - target（不是 2 * (y - target)）。",
    )
    for k in _FB_KEYS:
        out[k].append(_Variant(np.asarray(expected[k]) * 2, half))
    return out


# ------------------------------------------------------------------------------------- optimizers

OPT_SETTINGS: dict[str, tuple[float, dict[str, float]]] = {
    # class: (lr used in every check, non-default keywords for "custom hyperparameters")
    "SGD": (0.1, {}),
    "Momentum": (0.1, {"beta": 0.5}),
    "AdaGrad": (0.5, {"eps": 1e-3}),
    "RMSProp": (0.01, {"beta": 0.8, "eps": 1e-4}),
    "Adam": (0.01, {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6}),
}


# Gradient sizes for the "small gradients" checks: sqrt(s) is then comparable to the default eps.
SMALL_GRAD_SCALE = {"AdaGrad": 1e-6, "RMSProp": 1e-6, "Adam": 1e-7}


def _defaults(cls: type[ref_opt.Optimizer], **defaults: float) -> Callable[..., ref_opt.Optimizer]:
    """`cls` with other default keywords (e.g. torch's), for the hint that names them."""

    def make(params: list[np.ndarray], lr: float, **kw: float) -> ref_opt.Optimizer:
        return cls(params, lr, **{**defaults, **kw})

    return make


class _TorchMomentum(ref_opt.Momentum):
    def _update(self, i: int, g: np.ndarray) -> np.ndarray:
        prev = self.s[i]
        s = g.copy() if prev is None else self.beta * prev + g
        self.s[i] = s
        return self.lr * s


class _ZeroStartMomentum(ref_opt.Momentum):
    def _update(self, i: int, g: np.ndarray) -> np.ndarray:
        prev = self.s[i]
        s = (1.0 - self.beta) * g if prev is None else self.beta * prev + (1.0 - self.beta) * g
        self.s[i] = s
        return self.lr * s


class _EpsInsideAdaGrad(ref_opt.AdaGrad):
    def _update(self, i: int, g: np.ndarray) -> np.ndarray:
        self.s[i] = self.s[i] + g * g
        return self.lr * g / np.sqrt(self.s[i] + self.eps)


class _EpsInsideRMSProp(ref_opt.RMSProp):
    def _update(self, i: int, g: np.ndarray) -> np.ndarray:
        self.s[i] = self.beta * self.s[i] + (1.0 - self.beta) * g * g
        return self.lr * g / np.sqrt(self.s[i] + self.eps)


class _SwappedRMSProp(ref_opt.RMSProp):
    def _update(self, i: int, g: np.ndarray) -> np.ndarray:
        self.s[i] = (1.0 - self.beta) * self.s[i] + self.beta * g * g
        return self.lr * g / (np.sqrt(self.s[i]) + self.eps)


class _NoBiasAdam(ref_opt.Adam):
    def _update(self, i: int, g: np.ndarray) -> np.ndarray:
        self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g
        self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g
        return self.lr * self.m[i] / (np.sqrt(self.v[i]) + self.eps)


_EPS_INSIDE = _m(
    "eps is added after the square root: g / (np.sqrt(s) + eps), not g / np.sqrt(s + eps).",
    "eps 加在开方之后：g / (np.sqrt(s) + eps)，而不是 g / np.sqrt(s + eps)。",
)
OPT_VARIANTS: dict[str, list[tuple[Callable[..., ref_opt.Optimizer], Message]]] = {
    "Momentum": [
        (
            _TorchMomentum,
            _m(
                "This is torch-style momentum, s = beta * s + g. The course uses the exponentially weighted "
                "average s_t = beta * s_{t-1} + (1 - beta) * g_t, with s_1 = g_1.",
                "这是 torch 风格的动量 s = beta * s + g。课程使用指数加权平均 "
                "s_t = beta * s_{t-1} + (1 - beta) * g_t，且 s_1 = g_1。",
            ),
        ),
        (
            _ZeroStartMomentum,
            _m(
                "Momentum started from s_0 = 0, so the first step was (1 - beta) * g. The course starts "
                "with s_1 = g_1 (the first step is plain SGD).",
                "动量从 s_0 = 0 开始，第一步变成了 (1 - beta) * g。课程规定 s_1 = g_1（第一步就是普通 SGD）。",
            ),
        ),
    ],
    "AdaGrad": [
        (_EpsInsideAdaGrad, _EPS_INSIDE),
        (
            _defaults(ref_opt.AdaGrad, eps=1e-10),
            _m(
                "AdaGrad's default eps in the course is 1e-6 (torch.optim.Adagrad uses 1e-10).",
                "课程中 AdaGrad 的默认 eps 为 1e-6（torch.optim.Adagrad 用的是 1e-10）。",
            ),
        ),
    ],
    "RMSProp": [
        (_EpsInsideRMSProp, _EPS_INSIDE),
        (
            _defaults(ref_opt.RMSProp, eps=1e-8),
            _m(
                "RMSProp's default eps in the course is 1e-6 (torch.optim.RMSprop uses 1e-8).",
                "课程中 RMSProp 的默认 eps 为 1e-6（torch.optim.RMSprop 用的是 1e-8）。",
            ),
        ),
        (
            _defaults(ref_opt.RMSProp, beta=0.99),
            _m(
                "RMSProp's default beta in the course is 0.9 (torch.optim.RMSprop's alpha defaults to 0.99).",
                "课程中 RMSProp 的默认 beta 为 0.9（torch.optim.RMSprop 的 alpha 默认是 0.99）。",
            ),
        ),
        (
            _SwappedRMSProp,
            _m(
                "beta and 1 - beta are swapped: s = beta * s + (1 - beta) * g * g.",
                "beta 与 1 - beta 用反了：应为 s = beta * s + (1 - beta) * g * g。",
            ),
        ),
    ],
    "Adam": [
        (
            _NoBiasAdam,
            _m(
                "Adam without bias correction: divide m by (1 - beta1**t) and v by (1 - beta2**t), with t "
                "the number of steps taken so far (starting at 1), before w -= lr * m_hat / (sqrt(v_hat) + eps).",
                "Adam 缺少偏差修正：在 w -= lr * m_hat / (sqrt(v_hat) + eps) 之前，把 m 除以 (1 - beta1**t)、"
                "v 除以 (1 - beta2**t)，t 为已执行的步数（从 1 开始）。",
            ),
        )
    ],
}
_NOT_IN_PLACE = _m(
    "The parameters did not change: step() must update the arrays it was given in place, "
    "p -= lr * g (or p[...] = ...); p = p - lr * g or self.params[i] = ... only rebinds a name and the "
    "caller's arrays stay as they were.",
    "参数没有变化：step() 必须原地修改传入的数组，p -= lr * g（或 p[...] = ...）；"
    "p = p - lr * g 或 self.params[i] = ... 只是重新绑定了名字，调用者的数组并没有改变。",
)
_SHARED_STATE = _m(
    "Each optimizer instance must keep its own state (s, m, v, t) on self, created in __init__; not in a "
    "class attribute, a global or a mutable default argument.",
    "每个优化器实例必须把自己的状态（s、m、v、t）保存在 self 上，并在 __init__ 中创建；"
    "不要放在类属性、全局变量或可变默认参数中。",
)


def _simulate(
    cls: Callable[..., ref_opt.Optimizer],
    instances: list[tuple[list[np.ndarray], float, dict[str, float]]],
    steps: list[tuple[int, list[np.ndarray]]],
) -> list[list[np.ndarray]]:
    """Run the plan with `cls`; return per instance, per parameter, the (n_steps, *shape) trajectory."""
    params = [[p.astype(np.float64, copy=True) for p in ps] for ps, _, _ in instances]
    opts = [cls(ps, lr, **kw) for ps, (_, lr, kw) in zip(params, instances, strict=True)]
    hist: list[list[list[np.ndarray]]] = [[[] for _ in ps] for ps in params]
    for i, grads in steps:
        opts[i].step([g.copy() for g in grads])
        for j, p in enumerate(params[i]):
            hist[i][j].append(p.copy())
    return [[np.stack(h) for h in per] for per in hist]


def _plan_optimizers(plan: _Plan) -> None:
    rng = plan.rng
    for cls_name, (lr, custom) in OPT_SETTINGS.items():
        cases: list[tuple[str, list[tuple[list[np.ndarray], float, dict[str, float]]], list[Any]]] = []
        fixed = [np.array([1.0, -2.0, 3.0])]
        cases.append(
            (
                "two steps on a small fixed case",
                [(fixed, lr, {})],
                [(0, [np.array([0.5, -1.0, 2.0])]), (0, [np.array([0.1, 0.3, -0.2])])],
            )
        )
        shapes = [(3,), (2, 4), (4, 1)]
        cases.append(
            (
                "several parameter tensors",
                [([rng.normal(size=s) for s in shapes], lr, {})],
                [(0, [rng.normal(size=s) for s in shapes]) for _ in range(5)],
            )
        )
        shapes = [(4,), (3, 3)]
        cases.append(
            (
                "50-step trajectory",
                [([rng.normal(size=s) for s in shapes], lr, {})],
                [(0, [rng.normal(size=s) for s in shapes]) for _ in range(50)],
            )
        )
        if custom:
            cases.append(
                (
                    "custom hyperparameters",
                    [([rng.normal(size=5)], lr, dict(custom))],
                    [(0, [rng.normal(size=5)]) for _ in range(10)],
                )
            )
        if cls_name in SMALL_GRAD_SCALE:
            # With gradients near eps in size, where eps sits and its default value both matter.
            scale = SMALL_GRAD_SCALE[cls_name]
            cases.append(
                (
                    "small gradients (eps matters)",
                    [([rng.normal(size=4)], lr, {})],
                    [(0, [scale * rng.normal(size=4)]) for _ in range(10)],
                )
            )
        shapes = [(3,), (2, 2)]
        cases.append(
            (
                "two instances do not share state",
                [
                    ([rng.normal(size=s) for s in shapes], lr, {}),
                    ([rng.normal(size=s) for s in shapes], lr, {}),
                ],
                [(i % 2, [rng.normal(size=s) for s in shapes]) for i in range(12)],
            )
        )
        for case, instances, steps in cases:
            oid = plan.optimizer(cls_name, instances, steps)
            expected = _simulate(ref_opt.OPTIMIZERS[cls_name], instances, steps)
            wrong = [(_simulate(v, instances, steps), hint) for v, hint in OPT_VARIANTS.get(cls_name, [])]
            parts = []
            for i, per in enumerate(expected):
                for j, traj in enumerate(per):
                    unchanged = np.broadcast_to(instances[i][0][j], traj.shape)
                    variants = [_Variant(w[i][j], hint) for w, hint in wrong]
                    variants.append(_Variant(np.array(unchanged), _NOT_IN_PLACE))
                    who = f"instance {i + 1}, " if len(instances) > 1 else ""
                    who_zh = f"实例 {i + 1}，" if len(instances) > 1 else ""
                    parts.append(
                        _Part(
                            key=f"{oid}.{i}.{j}",
                            label=f"{who}params[{j}]",
                            label_zh=f"{who_zh}params[{j}]",
                            expected=traj,
                            variants=variants,
                            trajectory=True,
                        )
                    )
            kw_text = "".join(f", {k}={v}" for k, v in instances[0][2].items())
            first_grads = next(g for i, g in steps if i == 0)
            plan.checks.append(
                _Check(
                    name=f"{cls_name}: {case}",
                    func=cls_name,
                    op=oid,
                    call=f"{cls_name}(params, {lr}{kw_text}).step(grads)",
                    input=_input_display(
                        {
                            "params": instances[0][0],
                            "lr": lr,
                            **instances[0][2],
                            "first grads": first_grads,
                            "steps": len(steps),
                            "instances": len(instances),
                        }
                    ),
                    parts=parts,
                    isolation=len(instances) > 1,
                    error_hints=[(_KWARG_ERROR, _signature_hint(cls_name))],
                )
            )


# ------------------------------------------------------------------------------------ displaying


def _num(v: float, digits: int = 10) -> float | str:
    if np.isfinite(v):
        return float(f"{v:.{digits}g}")
    return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")


def _show(a: Any, limit: int = 12, digits: int = 10) -> Any:
    """A JSON-able, small view of an array: the values when small, else shape and first values."""
    if isinstance(a, list | tuple) and a and all(isinstance(v, np.ndarray) for v in a):
        return [_show(v, limit, digits) for v in a]
    if not isinstance(a, np.ndarray | np.generic):
        return a
    ints = np.asarray(a)
    if ints.dtype.kind in "biu":  # class labels, say: shown as the integers they are
        return (
            ints.tolist()
            if ints.size <= limit
            else {"shape": list(ints.shape), "first": ints.reshape(-1)[:6].tolist()}
        )
    arr = np.asarray(a, dtype=np.float64)
    if arr.size <= limit:
        if arr.ndim == 0:
            return _num(float(arr), digits)
        return np.vectorize(lambda v: _num(v, digits), otypes=[object])(arr).tolist()
    return {"shape": list(arr.shape), "first": [_num(float(v), digits) for v in arr.reshape(-1)[:6]]}


def _input_display(values: dict[str, Any]) -> dict[str, Any]:
    # Inputs are shown to 7 digits: enough to recognise them, short enough to read.
    return {k: _show(v, digits=7) for k, v in values.items()}


def _fmt(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=6, threshold=12, edgeitems=2, separator=", ")


def _signature_hint(func: str) -> Message:
    sig = SIGNATURES[func]
    return _m(f"Use the handout's signature: {sig}.", f"请使用作业说明中的签名：{sig}。")


# ------------------------------------------------------------------------------------ the evaluator


@dataclass
class _Outcome:
    passed: bool
    message: str = ""
    message_zh: str = ""
    got: Any = None
    hint: Message | None = None
    expected: Any = None


class FunctionsEvaluator:
    """Grades activations.py, backprop.py and optimizers.py against `reference`."""

    uses_input_cache = False

    def where(self, prepared: Prepared, stage: dict[str, str] | None) -> Message | None:
        """Where the harness was when the run stopped without a result: importing the file, or the
        call (or optimizer) of one of the planned checks."""
        if stage and stage.get("what") == "op":
            state: _State = prepared.state
            check = next((c for c in state.checks if c.op == stage.get("id")), None)
            if check is not None:
                if check.op.startswith("o"):
                    return _m(
                        f"while running {check.func}(...) and its step() (check {check.name!r})",
                        f"在运行 {check.func}(...) 及其 step() 时（检查 {check.name!r}）",
                    )
                return _m(
                    f"while calling {check.call} (check {check.name!r})",
                    f"在调用 {check.call} 时（检查 {check.name!r}）",
                )
        return describe_stage(stage)

    def prepare(self, spec: AssignmentSpec, submission_dir: Path, data_dir: Path | None) -> Prepared:
        """Plan the harness calls and compute the expected values (deterministic per assignment)."""
        if spec.kind not in MODULES:
            raise ValueError(f"FunctionsEvaluator cannot grade kind {spec.kind!r}")
        plan = _Plan(spec.kind)
        {"activations": _plan_activations, "backprop": _plan_backprop, "optimizers": _plan_optimizers}[
            spec.kind
        ](plan)
        names = [c.name for c in plan.checks]
        assert len(names) == len(set(names)), "check names must be unique"
        job = plan.job()
        job["call_budget_s"] = call_budget_s(spec.timeout_s, len(job["ops"]))
        return Prepared(
            job=job,
            inputs=plan.inputs,
            state=_State(kind=spec.kind, module=MODULES[spec.kind], checks=plan.checks),
        )

    def verdict(
        self, spec: AssignmentSpec, score: float, metrics: dict[str, Any], checks: list[CheckResult]
    ) -> tuple[bool, list[CheckResult]]:
        """A function homework passes with every check passed (and the score at the pass mark)."""
        return all(c.passed for c in checks) and score >= spec.pass_threshold, checks

    def score(self, spec: AssignmentSpec, prepared: Prepared, output: HarnessOutput) -> Scored:
        """Compare the returned arrays with the expected ones, one CheckResult per check."""
        result = output.result
        if not result.get("ok", False):
            err = result.get("error") or {}
            code = err.get("code", "crashed")
            raise GradeError(
                ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.crashed,
                err.get("message", "The harness failed."),
                err.get("message_zh", "评测程序运行失败。"),
            )
        state: _State = prepared.state
        ops = (result.get("info") or {}).get("ops", {})
        outcomes = [
            _evaluate(check, state.module, ops.get(check.op), output.arrays) for check in state.checks
        ]
        failed_funcs = {
            c.func for c, o in zip(state.checks, outcomes, strict=True) if not o.passed and not c.isolation
        }
        checks: list[CheckResult] = []
        per_func: dict[str, dict[str, int]] = {}
        for check, outcome in zip(state.checks, outcomes, strict=True):
            if check.isolation and not outcome.passed and check.func not in failed_funcs:
                outcome.hint = _SHARED_STATE
            checks.append(
                CheckResult(
                    name=check.name,
                    passed=outcome.passed,
                    message=outcome.message,
                    message_zh=outcome.message_zh,
                    input=check.input,
                    expected=outcome.expected if outcome.expected is not None else _expected_display(check),
                    got=outcome.got,
                    hint=outcome.hint,
                )
            )
            tally = per_func.setdefault(check.func, {"passed": 0, "total": 0})
            tally["total"] += 1
            tally["passed"] += int(outcome.passed)
        n_pass = sum(c.passed for c in checks)
        hints: list[Message] = []
        info = result.get("info") or {}
        candidates = [str(c) for c in info.get("module_candidates") or []][:10]
        if len(candidates) > 1:
            # Several copies (an old version in a subfolder, say): say which one was graded.
            graded = str(info.get("module"))
            others = ", ".join(c for c in candidates if c != graded)
            hints.append(
                _m(
                    f"Your zip has {len(candidates)} files named like {state.module}; the grader graded {graded} "
                    f"(the one nearest the top) and ignored {others}. Remove the copies you did not mean to submit.",
                    f"你的 zip 中有 {len(candidates)} 个名为 {state.module} 的文件；评测使用了 {graded}（最靠近根目录的那个），"
                    f"忽略了 {others}。请删除不打算提交的副本。",
                )
            )
        for c in checks:
            if c.hint is not None and c.hint not in hints:
                hints.append(c.hint)
        score = n_pass / len(checks) if checks else 0.0
        passed, _ = self.verdict(spec, score, {}, checks)
        return Scored(
            score=score,
            passed=passed,
            metrics={
                "checks_total": len(checks),
                "checks_passed": n_pass,
                "functions": per_func,
                "module": (result.get("info") or {}).get("module"),
            },
            checks=checks,
            hints=hints[:8],
        )


def _expected_display(check: _Check) -> Any:
    part = check.parts[0]
    return _show(part.expected[-1] if part.trajectory else part.expected)


def _evaluate(
    check: _Check, module: str, rec: dict[str, Any] | None, arrays: dict[str, np.ndarray]
) -> _Outcome:
    what = "class" if check.func[:1].isupper() else "function"
    if rec is None:
        return _Outcome(False, f"{check.call} was not run.", f"{check.call} 没有被执行。")
    if rec.get("missing"):
        return _Outcome(
            False,
            f"{module} has no {what} named {check.func}.",
            f"{module} 中没有名为 {check.func} 的{'类' if what == 'class' else '函数'}。",
            hint=_m(
                f"Define {SIGNATURES[check.func]} in {module}, with exactly this name.",
                f"请在 {module} 中定义 {SIGNATURES[check.func]}，名字必须完全一致。",
            ),
        )
    if rec.get("timed_out"):
        budget = float(rec.get("budget_s") or 0)
        return _Outcome(
            False,
            f"{check.call} did not return within {budget:.3g} s and was stopped.",
            f"{check.call} 没有在 {budget:.3g} 秒内返回，已被终止。",
            hint=_m(
                f"An endless loop, or a loop over array elements in Python? Use whole-array NumPy operations and "
                f"time it on the input shown: {SIGNATURES[check.func]}.",
                f"是否有死循环，或在 Python 中逐元素循环？请使用整体的 NumPy 数组运算，并用上面显示的输入测一下耗时："
                f"{SIGNATURES[check.func]}。",
            ),
        )
    if not rec.get("ok"):
        error = str(rec.get("error") or "failed")
        if error.startswith("returned"):
            return _Outcome(
                False,
                f"{check.call} {error}; expected NumPy arrays (or torch tensors, or floats for scalars).",
                f"{check.call} 的返回值无法读取（{error}）；应返回 NumPy 数组（或 torch 张量，标量可为 float）。",
                hint=_m(
                    f"Return numbers, not text or None: {SIGNATURES[check.func]}.",
                    f"请返回数值，而不是字符串或 None：{SIGNATURES[check.func]}。",
                ),
            )
        where = rec.get("where")
        hint = _exit_hint(check, error) or next(
            (h for pat, h in check.error_hints if pat.search(error)), None
        )
        hint = (
            hint
            or check.hint
            or _m(
                f"Run it yourself on the input shown (float64 NumPy arrays; integer ones, such as labels, int64) "
                f"to reproduce the error: {SIGNATURES[check.func]}.",
                f"请用上面显示的输入（float64 NumPy 数组；整数输入如 labels 为 int64）自己运行一遍以复现错误："
                f"{SIGNATURES[check.func]}。",
            )
        )
        return _Outcome(
            False,
            f"{check.call} raised {error}" + (f" (in {where})" if where else ""),
            f"{check.call} 抛出了异常 {error}" + (f"（位置：{where}）" if where else ""),
            hint=hint,
        )
    for part in check.parts:
        outcome = _compare_part(check, part, rec, arrays)
        if not outcome.passed:
            return outcome
    return _Outcome(True)


def _exit_hint(check: _Check, error: str) -> Message | None:
    """The hint for a function that ended the program instead of returning (SystemExit from exit()
    or sys.exit(), or a KeyboardInterrupt raised by hand)."""
    if not error.startswith(("SystemExit", "KeyboardInterrupt")):
        return None
    return _m(
        f"{check.func} ended the program ({error.split(':')[0]}) instead of returning: remove exit(), "
        f"sys.exit() and raise KeyboardInterrupt from it and return the result, {SIGNATURES[check.func]}.",
        f"{check.func} 结束了程序（{error.split(':')[0]}）而没有返回：请删去其中的 exit()、sys.exit() 和 "
        f"raise KeyboardInterrupt，并返回结果：{SIGNATURES[check.func]}。",
    )


def _float32_hint(rec: dict[str, Any], got: np.ndarray, exp: np.ndarray) -> Message | None:
    """The hint for a result computed in float32 or float16 (right to that precision): the checks are
    float64 at rtol 1e-6, the precision of the float64 inputs."""
    returned = str(rec.get("returned") or "")
    low = next((t for t in ("float16", "float32", "bfloat16") if t in returned.split()), None)
    if low is None or not np.allclose(got, exp, rtol=1e-2, atol=1e-5, equal_nan=True):
        return None
    return _m(
        f"The result is {low}, which keeps about {3 if low != 'float32' else 7} significant digits; the "
        "checks compare float64 values to 1e-6. Compute in float64: keep the inputs' dtype (no "
        ".astype(np.float32), no torch.float32 tensors) and return a float64 array.",
        f"结果是 {low}，只保留约 {3 if low != 'float32' else 7} 位有效数字；检查按 float64 比较，相对误差 1e-6。"
        "请用 float64 计算：保持输入的 dtype（不要 .astype(np.float32)，不要用 torch.float32 张量），并返回 float64 数组。",
    )


def _key_stem(key: str) -> str:
    """A gradient's key as students misname it: dW1, grad_W1, w1 and W1_grad all stem to w1."""
    k = key.lower()
    for prefix in ("grad_", "grad", "d_", "d"):
        if k.startswith(prefix) and len(k) > len(prefix):
            k = k[len(prefix) :]
            break
    for suffix in ("_grad", "grad"):
        if k.endswith(suffix) and len(k) > len(suffix):
            k = k[: -len(suffix)]
    return k


def _compare_part(check: _Check, part: _Part, rec: dict[str, Any], arrays: dict[str, np.ndarray]) -> _Outcome:
    got = arrays.get(part.key)
    exp = part.expected
    label_zh = part.label_zh or part.label
    if got is None:
        kind = rec.get("kind")
        if kind == "dict":
            keys = rec.get("keys", [])
            wanted = part.key.split(".", 1)[1] if "." in part.key else part.key
            near = next((k for k in keys if _key_stem(k) == _key_stem(wanted) and k != wanted), None)
            key_hint = (
                _m(
                    f"Name the key {wanted!r}, not {near!r}: the dict's keys are the parameter names, "
                    f"{SIGNATURES[check.func]}.",
                    f"请把键 {near!r} 改名为 {wanted!r}：dict 的键是参数名，{SIGNATURES[check.func]}。",
                )
                if near is not None
                else _signature_hint(check.func)
            )
            return _Outcome(
                False,
                f"{check.call} returned a dict without {part.label} (keys: {keys}).",
                f"{check.call} 返回的 dict 中缺少 {label_zh}（现有键：{keys}）。",
                hint=key_hint,
            )
        if kind == "tuple" and part.key == check.op:
            return _Outcome(
                False,
                f"{check.call} returned a {rec.get('returned')} of several values; it should return one "
                "array (a NumPy array or a torch tensor).",
                f"{check.call} 返回了包含多个值的 {rec.get('returned')}；应返回一个数组（NumPy 数组或 torch 张量）。",
                hint=_signature_hint(check.func),
            )
        return _Outcome(
            False,
            f"{check.call} returned {rec.get('returned')}; {part.label} was expected.",
            f"{check.call} 返回了 {rec.get('returned')}；需要的是 {label_zh}。",
            hint=_signature_hint(check.func),
        )
    if exp.ndim == 0 and got.size == 1:
        got = got.reshape(())
    if got.shape != exp.shape:
        hint = check.hint
        if got.ndim == 2 and got.shape == exp.T.shape and np.allclose(got.T, exp, rtol=RTOL, atol=ATOL):
            hint = _m(
                f"The values are right but transposed: {part.label} must have shape {exp.shape}, like the "
                "weight (nn.Linear layout (out, in)).",
                f"数值正确但转置了：{label_zh} 的形状应为 {exp.shape}，与权重相同（nn.Linear 布局 (out, in)）。",
            )
        elif got.size == exp.size and np.allclose(got.reshape(exp.shape), exp, rtol=RTOL, atol=ATOL):
            bias = part.label in ('result["b1"]', 'result["b2"]')
            hint = _m(
                f"The values are right but the shape is {got.shape}; return shape {exp.shape}"
                + (
                    " (sum over axis 0 without keepdims for a bias gradient)."
                    if bias
                    else " (the input's shape)."
                ),
                f"数值正确但形状为 {got.shape}；应返回形状 {exp.shape}"
                + ("（偏置梯度沿 axis 0 求和时不要 keepdims）。" if bias else "（与输入的形状相同）。"),
            )
        return _Outcome(
            False,
            f"{check.call}: {part.label} has shape {got.shape}, expected {exp.shape}.",
            f"{check.call}：{label_zh} 的形状为 {got.shape}，应为 {exp.shape}。",
            got=_show(got),
            hint=hint,
        )
    close = np.isclose(got, exp, rtol=RTOL, atol=ATOL)
    if close.all():
        return _Outcome(True)
    hint = next(
        (
            v.hint
            for v in part.variants
            if v.expected.shape == got.shape and np.allclose(got, v.expected, rtol=RTOL, atol=ATOL)
        ),
        None,
    )
    if hint is None and check.nonfinite_hint is not None and not np.all(np.isfinite(got)):
        hint = check.nonfinite_hint
    hint = hint or _float32_hint(rec, got, exp)
    if (
        hint is None
        and got.ndim == 2
        and got.shape == exp.T.shape
        and np.allclose(got.T, exp, rtol=RTOL, atol=ATOL)
    ):
        hint = _m(
            f"{part.label} is transposed: with the nn.Linear layout (out, in) it is delta.T @ input.",
            f"{label_zh} 转置了：在 nn.Linear 布局 (out, in) 下应为 delta.T @ input。",
        )
    hint = hint or check.hint
    bad = np.argwhere(~close)[0]
    idx = tuple(int(i) for i in bad)
    if part.trajectory:
        step = idx[0]
        en = (
            f"{check.call}: {part.label} first differs after step {step + 1} of {exp.shape[0]}: "
            f"expected {_fmt(exp[step])}, got {_fmt(got[step])}."
        )
        zh = (
            f"{check.call}：{label_zh} 在第 {step + 1} 步（共 {exp.shape[0]} 步）之后开始不同："
            f"应为 {_fmt(exp[step])}，实际为 {_fmt(got[step])}。"
        )
        return _Outcome(False, en, zh, got=_show(got[step]), hint=hint, expected=_show(exp[step]))
    if part.elementwise_x is not None and exp.ndim > 0:
        x = float(part.elementwise_x[idx])
        en = (
            f"{check.call} at x[{', '.join(map(str, idx))}] = {x:.6g}: expected {exp[idx]:.8g}, "
            f"got {got[idx]:.8g} ({int((~close).sum())} of {exp.size} values differ)."
        )
        zh = (
            f"{check.call} 在 x[{', '.join(map(str, idx))}] = {x:.6g} 处：应为 {exp[idx]:.8g}，"
            f"实际为 {got[idx]:.8g}（{exp.size} 个值中有 {int((~close).sum())} 个不同）。"
        )
        return _Outcome(False, en, zh, got=_show(got), hint=hint)
    if exp.size > 12:  # too many values to read in a sentence: the first that differs, as above
        at = ", ".join(map(str, idx))
        differ = int((~close).sum())
        en = (
            f"{check.call}: {part.label}[{at}] expected {exp[idx]:.8g}, got {got[idx]:.8g} "
            f"({differ} of {exp.size} values differ)."
        )
        zh = (
            f"{check.call}：{label_zh}[{at}] 应为 {exp[idx]:.8g}，实际为 {got[idx]:.8g}"
            f"（{exp.size} 个值中有 {differ} 个不同）。"
        )
        return _Outcome(False, en, zh, got=_show(got), hint=hint)
    en = f"{check.call}: {part.label} expected {_fmt(exp)}, got {_fmt(got)}."
    zh = f"{check.call}：{label_zh} 应为 {_fmt(exp)}，实际为 {_fmt(got)}。"
    return _Outcome(False, en, zh, got=_show(got), hint=hint)


EVALUATOR = FunctionsEvaluator()
