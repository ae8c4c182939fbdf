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


class Evaluator(Protocol):
    # Whether prepare() gives its inputs an `inputs_cache_key` (known before the submission is unpacked).
    uses_input_cache: bool

    def prepare(self, spec: AssignmentSpec, submission_dir: Path, data_dir: Path | None) -> Prepared: ...

    def score(self, spec: AssignmentSpec, prepared: Prepared, output: HarnessOutput) -> Scored: ...
