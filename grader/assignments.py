"""Assignment specifications: what each built-in assignment is and how it is graded.

The service stores a copy of the spec per assignment (instructors can change thresholds and limits);
the grader only ever sees an `AssignmentSpec`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Kind = Literal["phone-price", "mnist", "activations", "backprop", "optimizers"]
MODEL_KINDS: frozenset[str] = frozenset({"phone-price", "mnist"})
FUNCTION_KINDS: frozenset[str] = frozenset({"activations", "backprop", "optimizers"})


class AssignmentSpec(BaseModel):
    slug: str
    title: str
    title_zh: str = ""
    kind: Kind
    # Model assignments pass at accuracy >= pass_threshold; function assignments pass when every
    # check passes (pass_threshold 1.0).
    pass_threshold: float = Field(default=1.0, ge=0.0, le=1.0)
    timeout_s: float = Field(default=60.0, gt=0)
    memory_mb: int = Field(default=4096, gt=0)
    max_processes: int = Field(default=64, gt=0)

    @property
    def is_model(self) -> bool:
        return self.kind in MODEL_KINDS


BUILTIN_ASSIGNMENTS: dict[str, AssignmentSpec] = {
    spec.slug: spec
    for spec in [
        AssignmentSpec(
            slug="phone-price",
            title="Phone price range classifier",
            title_zh="手机价格分类",
            kind="phone-price",
            pass_threshold=0.9625,
        ),
        AssignmentSpec(
            slug="mnist",
            title="MNIST digit classifier",
            title_zh="MNIST 手写数字识别",
            kind="mnist",
            pass_threshold=0.95,
        ),
        AssignmentSpec(
            slug="activations",
            title="Activation functions and their derivatives",
            title_zh="激活函数及其导数",
            kind="activations",
        ),
        AssignmentSpec(
            slug="backprop",
            title="Backpropagation by hand",
            title_zh="手写反向传播",
            kind="backprop",
        ),
        AssignmentSpec(
            slug="optimizers",
            title="Optimizers: SGD, Momentum, AdaGrad, RMSProp, Adam",
            title_zh="优化器：SGD、动量、AdaGrad、RMSProp、Adam",
            kind="optimizers",
        ),
    ]
}


def get_assignment(slug: str) -> AssignmentSpec:
    try:
        return BUILTIN_ASSIGNMENTS[slug]
    except KeyError:
        raise KeyError(f"unknown assignment {slug!r}; built-in: {', '.join(BUILTIN_ASSIGNMENTS)}") from None
