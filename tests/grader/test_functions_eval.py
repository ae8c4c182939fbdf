"""Function homework graded in process: prepare() -> harness run() on a copy of the submission -> score().

The harness is loaded by path with main.py's HarnessError injected, as main.py does inside the sandbox;
its job and inputs go through the same JSON / .npy round trips as across the sandbox wall, its arrays
and info through the harness's own result writer and the grader's reader.
End-to-end runs through the sandbox belong to tests/grader/test_grade*.py.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from grader.assignments import BUILTIN_ASSIGNMENTS
from grader.evaluators import functions as functions_eval
from grader.evaluators.base import HarnessOutput, Scored
from grader.evaluators.functions import EVALUATOR
from grader.report import GradeError
from grader.sandbox import read_result
from tests.grader.harness_result import MAIN, written

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "reference" / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "functions"
CHECK_COUNTS = {"activations": 30, "backprop": 28, "optimizers": 27}

# The deliberately wrong submissions overflow on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _load(path: Path, name: str, inject: dict[str, Any] | None = None) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    for k, v in (inject or {}).items():
        setattr(module, k, v)
    spec.loader.exec_module(module)
    return module


HarnessError = MAIN.HarnessError
HARNESS = _load(
    REPO / "grader" / "harness" / "functions.py",
    "_test_hwgrade_harness_functions",
    {"HarnessError": HarnessError},
)


def _npy_roundtrip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the sandbox does to inputs: each is saved as .npy and loaded without pickles."""
    out = {}
    for k, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        buf.seek(0)
        out[k] = np.load(buf, allow_pickle=False)
    return out


def _result_roundtrip(arrays: dict[str, np.ndarray], info: dict[str, Any]) -> HarnessOutput:
    """What the sandbox does to outputs: the harness writes its result to a memfd, the grader reads it."""
    result, out, bad = read_result(written(arrays, {"ok": True, "error": None, "info": info}))
    assert bad is None and result is not None
    return HarnessOutput(result=result, arrays=out)


def run_harness(job: dict[str, Any], inputs: dict[str, np.ndarray], workdir: Path) -> HarnessOutput:
    """Run the harness in `workdir` like the sandbox does, undoing its sys.path / sys.modules changes."""
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    cwd = Path.cwd()
    try:
        os.chdir(workdir)
        arrays, info = HARNESS.run(json.loads(json.dumps(job)), _npy_roundtrip(inputs))
    finally:
        os.chdir(cwd)
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            del sys.modules[name]
    return _result_roundtrip(arrays, info)


def grade_dir(kind: str, src: Path, tmp_path: Path) -> Scored:
    spec = BUILTIN_ASSIGNMENTS[kind]
    work = tmp_path / "work"
    shutil.copytree(src, work)
    prepared = EVALUATOR.prepare(spec, work, None)
    return EVALUATOR.score(spec, prepared, run_harness(prepared.job, prepared.inputs, work))


def failing(scored: Scored) -> set[str]:
    return {c.name for c in scored.checks if not c.passed}


# ------------------------------------------------------------------------------ correct submissions


@pytest.mark.parametrize("kind", ["activations", "backprop", "optimizers"])
def test_example_submission_passes_every_check(kind: str, tmp_path: Path) -> None:
    scored = grade_dir(kind, EXAMPLES / kind, tmp_path)
    assert failing(scored) == set()
    assert scored.score == 1.0 and scored.passed
    assert len(scored.checks) == CHECK_COUNTS[kind] == scored.metrics["checks_total"]
    assert scored.hints == []


@pytest.mark.parametrize(
    ("kind", "fixture"),
    [("activations", "activations_torch"), ("backprop", "backprop_torch")],
)
def test_torch_tensors_returned_are_accepted(kind: str, fixture: str, tmp_path: Path) -> None:
    """activations_torch also sits in a subfolder (hw2/) and returns an nn.Parameter from softmax."""
    scored = grade_dir(kind, FIXTURES / fixture, tmp_path)
    assert failing(scored) == set()
    assert scored.passed


def test_lists_returned_are_one_array_at_every_rank(tmp_path: Path) -> None:
    # ndarray.tolist() gives nested lists for 2-D and 3-D inputs: one array each, not a tuple of rows.
    scored = grade_dir("activations", FIXTURES / "activations_tolist", tmp_path)
    assert failing(scored) == set()
    assert scored.score == 1.0


# ---------------------------------------------------------------------------- wrong submissions

FB_CASES = ["worked example", "zero weights", "random batch of 4", "random batch of 8"]
FB_OUTPUTS = ["loss", "dW1", "db1", "dW2", "db2"]
OPT_CASES = [
    "two steps on a small fixed case",
    "several parameter tensors",
    "50-step trajectory",
    "custom hyperparameters",
    "small gradients (eps matters)",
    "two instances do not share state",
]


def _all(prefix: str, cases: list[str]) -> set[str]:
    return {f"{prefix}: {c}" for c in cases}


EXPECTED: dict[str, tuple[str, set[str], list[str]]] = {
    # fixture: (kind, exactly the failing checks, phrases the hints must contain)
    "activations_naive_softmax": ("activations", {"softmax: ±1000 stays finite"}, ["Subtract the maximum"]),
    "activations_relu_grad_ge": (
        "activations",
        {"relu_grad: at 0 (left derivative)", "leaky_relu: random 2-D, alpha=0.2"},
        ["relu_grad(0) == 0", "ignored the alpha"],
    ),
    "activations_broken": (
        "activations",
        _all("sigmoid_grad", ["zeros", "random 1-D", "random 2-D"])
        | _all("tanh_grad", ["zeros", "random 1-D", "random 2-D"])
        | _all("relu", ["zeros", "random 1-D", "random 2-D"])
        | _all(
            "softmax", ["zeros", "random 1-D", "random 2-D", "axis=0", "±1000 stays finite", "random 3-D"]
        ),
        ["it receives x, not sigmoid(x)", "Define tanh_grad(x)", "Return numbers", "reproduce the error"],
    ),
    "activations_exit_in_function": (
        "activations",
        _all("relu", ["zeros", "random 1-D", "random 2-D"])
        | _all(
            "softmax", ["zeros", "random 1-D", "random 2-D", "axis=0", "±1000 stays finite", "random 3-D"]
        ),
        ["relu ended the program (SystemExit)", "softmax ended the program (KeyboardInterrupt)"],
    ),
    "activations_float32": (
        "activations",
        _all("sigmoid_grad", ["random 1-D", "random 2-D"]) | _all("tanh_grad", ["random 1-D", "random 2-D"]),
        ["The result is float32", "Compute in float64"],
    ),
    "activations_softmax_2d_only": (
        "activations",
        {"softmax: random 3-D"},
        ["the last axis whatever the rank"],
    ),
    "backprop_transposed": (
        "backprop",
        {f"forward_backward: {c}, {o}" for c in FB_CASES for o in FB_OUTPUTS},
        ["nn.Linear layout (out, in)"],
    ),
    "backprop_mean_naive_ce": (
        "backprop",
        {"forward_backward: zero weights, loss", "forward_backward: zero weights, dW2"}
        | {"forward_backward: zero weights, db2"}
        | {f"forward_backward: random batch of {n}, {o}" for n in (4, 8) for o in FB_OUTPUTS}
        | {
            "softmax_cross_entropy: ±1000 stays finite, loss",
            "softmax_cross_entropy: ±1000 stays finite, dlogits",
        },
        ["not averaged", "log-softmax"],
    ),
    "optimizers_torch_momentum": (
        "optimizers",
        _all("Momentum", [c for c in OPT_CASES if c != "small gradients (eps matters)"]),
        ["torch-style momentum"],
    ),
    "optimizers_mistakes": (
        "optimizers",
        _all(
            "SGD",
            [c for c in OPT_CASES if c not in ("custom hyperparameters", "small gradients (eps matters)")],
        )
        | _all("AdaGrad", OPT_CASES[1:])
        | _all("Adam", OPT_CASES),
        ["in place", "eps is added after the square root", "without bias correction"],
    ),
    "optimizers_shared_state": (
        "optimizers",
        {"Momentum: two instances do not share state", "RMSProp: two instances do not share state"},
        ["keep its own state"],
    ),
    "optimizers_missing_raising": (
        "optimizers",
        _all("AdaGrad", OPT_CASES) | _all("RMSProp", OPT_CASES) | {"Adam: custom hyperparameters"},
        ["reproduce the error", "Define class RMSProp", "handout's signature"],
    ),
}


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_wrong_submission_fails_exactly_the_expected_checks(fixture: str, tmp_path: Path) -> None:
    kind, expected_fail, hint_phrases = EXPECTED[fixture]
    scored = grade_dir(kind, FIXTURES / fixture, tmp_path)
    assert failing(scored) == expected_fail
    total = CHECK_COUNTS[kind]
    assert scored.score == pytest.approx((total - len(expected_fail)) / total)
    assert not scored.passed
    hints = " ".join(h.en for h in scored.hints)
    for phrase in hint_phrases:
        assert phrase in hints, phrase
    for check in scored.checks:
        if not check.passed:
            # Every failure explains itself in both languages, with a hint and a small payload.
            assert check.message and check.message_zh and check.hint is not None, check.name
            assert check.hint.en and check.hint.zh
            assert len(check.model_dump_json()) < 4000, check.name


def test_failed_check_shows_small_input_expected_and_got(tmp_path: Path) -> None:
    scored = grade_dir("activations", FIXTURES / "activations_relu_grad_ge", tmp_path)
    check = next(c for c in scored.checks if c.name == "relu_grad: at 0 (left derivative)")
    assert check.input == {"x": [-2.0, -0.5, 0.0, 0.5, 2.0]}
    assert check.expected == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert check.got == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert "x[2] = 0" in check.message and "expected 0, got 1" in check.message

    scored = grade_dir("activations", FIXTURES / "activations_naive_softmax", tmp_path / "b")
    check = next(c for c in scored.checks if not c.passed)
    assert check.got == [["nan", "nan", 0.0], ["nan", "nan", "nan"]]  # JSON-safe

    # Class labels are shown as the int64 indices they were passed as (floats would not index an
    # array when the student reruns the call), and the Chinese message names the item in Chinese.
    scored = grade_dir("backprop", FIXTURES / "backprop_mean_naive_ce", tmp_path / "c")
    check = next(c for c in scored.checks if c.name == "softmax_cross_entropy: ±1000 stays finite, loss")
    assert check.input["labels"] == [2, 0] and all(type(v) is int for v in check.input["labels"])
    assert "（返回的元组的第 0 项）" in check.message_zh and "item 0" not in check.message_zh


def test_trajectory_failure_names_the_first_diverging_step(tmp_path: Path) -> None:
    scored = grade_dir("optimizers", FIXTURES / "optimizers_torch_momentum", tmp_path)
    check = next(c for c in scored.checks if c.name == "Momentum: two steps on a small fixed case")
    # s_1 = g_1 in both forms, so the first step agrees and the second does not.
    assert "after step 2 of 2" in check.message
    assert check.expected == [0.904, -1.813, 2.622]
    assert check.got == [0.895, -1.84, 2.64]


# ------------------------------------------------------------------------------- whole-run errors


@pytest.mark.parametrize(
    "how",
    [
        "time.sleep(1000)",
        "while True: pass",
        "while True:\n        try:\n            time.sleep(1)\n        except Exception:\n            pass",
    ],
)
def test_an_endless_function_fails_only_its_own_checks(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's own time limit would stop everything and score 0; each op has a budget of its own.
    monkeypatch.setattr(functions_eval, "call_budget_s", lambda timeout_s, n_ops: 0.05)
    src = tmp_path / "src"
    src.mkdir()
    code = (EXAMPLES / "activations" / "activations.py").read_text(encoding="utf-8")
    code = code.replace("def sigmoid(x", "import time\n\n\ndef _old_sigmoid(x", 1)
    code += f"\n\ndef sigmoid(x):\n    {how}\n"
    (src / "activations.py").write_text(code, encoding="utf-8")
    scored = grade_dir("activations", src, tmp_path)
    bad = failing(scored)
    assert bad and all(name.startswith("sigmoid") for name in bad), bad
    check = next(c for c in scored.checks if not c.passed)
    assert "did not return within 0.05 s" in check.message and "0.05 秒内返回" in check.message_zh
    assert check.hint is not None and "endless loop" in check.hint.en
    assert scored.score == (len(scored.checks) - len(bad)) / len(scored.checks)


def test_gradients_under_dw1_style_keys_get_the_key_to_rename(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    code = (EXAMPLES / "backprop" / "backprop.py").read_text(encoding="utf-8")
    for key in ("W1", "b1", "W2", "b2"):
        code = code.replace(f'"{key}":', f'"d{key}":')
    (src / "backprop.py").write_text(code, encoding="utf-8")
    scored = grade_dir("backprop", src, tmp_path)
    hints = {h.en for h in scored.hints}
    assert "Name the key 'W1', not 'dW1': the dict's keys are the parameter names, " in next(
        (h[: h.index("forward")] for h in hints if "'W1'" in h), ""
    )
    assert any("请把键 'db2' 改名为 'b2'" in h.zh for h in scored.hints)


def test_missing_module_is_a_missing_function_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        grade_dir("activations", FIXTURES / "activations_missing_module", tmp_path)
    assert exc.value.code == "missing_function"
    assert "activations.py" in exc.value.message and "activations.py" in exc.value.message_zh


def test_module_raising_on_import_is_import_failed_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        grade_dir("activations", FIXTURES / "activations_import_error", tmp_path)
    assert exc.value.code == "import_failed"
    assert "tensorflow" in exc.value.message and "not 'tensorflow'" in exc.value.message
    assert "tensorflow" in exc.value.message_zh


def test_score_turns_a_harness_error_into_a_grade_error() -> None:
    spec = BUILTIN_ASSIGNMENTS["backprop"]
    prepared = EVALUATOR.prepare(spec, Path("."), None)
    bad = {"ok": False, "error": {"code": "missing_function", "message": "m", "message_zh": "z"}, "info": {}}
    with pytest.raises(GradeError) as exc:
        EVALUATOR.score(spec, prepared, HarnessOutput(result=bad, arrays={}))
    assert exc.value.code == "missing_function"


# --------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["activations", "backprop", "optimizers"])
def test_plan_is_deterministic_and_reasonable(kind: str, tmp_path: Path) -> None:
    spec = BUILTIN_ASSIGNMENTS[kind]
    a = EVALUATOR.prepare(spec, tmp_path, None)
    b = EVALUATOR.prepare(spec, tmp_path, None)
    assert json.dumps(a.job, sort_keys=True) == json.dumps(b.job, sort_keys=True)
    assert a.inputs.keys() == b.inputs.keys()
    assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    names = [c.name for c in a.state.checks]
    assert len(names) == len(set(names)) and 20 <= len(names) <= 60
    assert all(v.dtype in (np.float64, np.int64) for v in a.inputs.values())
    assert sum(v.size for v in a.inputs.values()) < 20_000


def test_same_submission_gives_the_same_report(tmp_path: Path) -> None:
    one = grade_dir("optimizers", FIXTURES / "optimizers_mistakes", tmp_path / "1")
    two = grade_dir("optimizers", FIXTURES / "optimizers_mistakes", tmp_path / "2")
    assert [c.model_dump() for c in one.checks] == [c.model_dump() for c in two.checks]
    assert one.metrics == two.metrics and one.hints == two.hints


def test_several_copies_of_the_file_say_which_was_graded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(EXAMPLES / "activations", src)
    (src / "old").mkdir()
    (src / "old" / "activations.py").write_text("def relu(x):\n    return x\n")
    scored = grade_dir("activations", src, tmp_path)
    assert scored.score == 1.0
    hint = scored.hints[0]
    assert "2 files named like activations.py" in hint.en and "graded activations.py" in hint.en
    assert "ignored old/activations.py" in hint.en and "old/activations.py" in hint.zh
