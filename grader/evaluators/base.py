"""The contract between `grade()` and one evaluator module per assignment kind.

An evaluator never runs student code itself. `prepare()` builds the job the in-sandbox harness runs
(a JSON-able dict) and the input arrays it needs; `score()` reads what came back from the sandbox and
compares it, in the trusted process, with labels or reference values that never entered the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from grader.assignments import AssignmentSpec
from grader.report import CheckResult, DatasetInfo, Message


@dataclass
class Prepared:
    job: dict[str, Any]
    inputs: dict[str, np.ndarray]
    # Trusted-side state kept for scoring (labels, reference outputs); never sent to the sandbox.
    state: Any = None
    dataset: DatasetInfo | None = None
    # Set when `inputs` are the same for every submission (a hidden test set): the sandbox then
    # writes them once under this key and shares them read-only instead of per run.
    inputs_cache_key: str | None = None


@dataclass
class Scored:
    score: float
    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    hints: list[Message] = field(default_factory=list)


@dataclass
class HarnessOutput:
    """What the harness returned: its JSON result and the arrays it wrote (already validated as plain
    numeric arrays: no objects, no pickles)."""

    result: dict[str, Any]
    arrays: dict[str, np.ndarray]


def describe_stage(stage: dict[str, str] | None) -> Message | None:
    """Where the harness was (its last progress record, see grader/harness/main.py), as the end of a
    sentence: "while importing model.py". None for a record this does not know; the evaluators add
    their own (a function homework's op)."""
    if not stage:
        return None
    what, file, name = stage.get("what"), stage.get("file", "?"), stage.get("name", "?")
    texts = {
        "import": (f"while importing {file}", f"在导入 {file} 时"),
        "load": (f"while loading the weights in {file}", f"在加载权重 {file} 时"),
        "build": (
            f"while building your model ({name}(...), its __init__)",
            f"在构建模型（{name}(...) 的 __init__）时",
        ),
        "preprocess": ("while preprocessing the test inputs", "在预处理测试输入时"),
        "forward": (
            "while your model ran on the test inputs (forward())",
            "在模型对测试输入运行（forward()）时",
        ),
    }
    if what not in texts:
        return None
    en, zh = texts[what]
    return Message(en=en, zh=zh)


class Evaluator(Protocol):
    # Whether prepare() gives its inputs an `inputs_cache_key` (known before the submission is unpacked).
    uses_input_cache: bool

    def where(self, prepared: Prepared, stage: dict[str, str] | None) -> Message | None: ...

    def prepare(self, spec: AssignmentSpec, submission_dir: Path, data_dir: Path | None) -> Prepared: ...

    def score(self, spec: AssignmentSpec, prepared: Prepared, output: HarnessOutput) -> Scored: ...

    def verdict(
        self, spec: AssignmentSpec, score: float, metrics: dict[str, Any], checks: list[CheckResult]
    ) -> tuple[bool, list[CheckResult]]:
        """Whether a graded result passes under `spec`'s pass mark, and its checks as they then read:
        what score() decided, decided again from what it stored (after the course moved the mark)."""
        ...
