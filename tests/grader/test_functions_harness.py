"""The in-sandbox function harness on its own: module lookup, output conversion, op isolation."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.grader.test_functions_eval import HARNESS, HarnessError, run_harness

STUDENT = """
import numpy as np
import torch
from helper import double   # a sibling file of the student's module


def ok(x):
    return double(x)

def mutate(x):
    x[...] = -1.0
    return x

def as_tuple(x):
    return x.sum(), x * 2

def as_dict(x):
    return {"a": x, "b": 1.5, "bad key": x, 7: x}

def as_list_of_numbers(x):
    return [1, 2.5, True]

def as_text(x):
    return "0.5"

def as_none(x):
    return None

def as_objects(x):
    return np.array([x, "a"], dtype=object)

def as_complex(x):
    return torch.zeros(2, dtype=torch.complex64)

def as_parameter(x):
    return torch.nn.Parameter(torch.as_tensor(x) * 3)

def as_np_scalar(x):
    return np.float32(0.25)

def as_bools(x):
    return x > 0

def raises(x):
    raise ZeroDivisionError("boom")

def oom(x):
    raise MemoryError

not_callable = 3


class Opt:
    def __init__(self, params, lr, beta=0.0):
        self.params, self.lr, self.beta = params, lr, beta

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p -= self.lr * g


class Rebinds(Opt):
    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads)):
            self.params[i] = p - self.lr * g


class BadStep(Opt):
    def step(self, grads):
        if getattr(self, "n", 0) == 1:
            raise ValueError("second step")
        self.n = 1
        super().step(grads)
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work" / "hw3"  # the module sits in a subfolder, as zipped folders do
    folder.mkdir(parents=True)
    (folder / "funcs.py").write_text(textwrap.dedent(STUDENT), encoding="utf-8")
    (folder / "helper.py").write_text("def double(x):\n    return x * 2\n", encoding="utf-8")
    (tmp_path / "work" / "notes.md").write_text("notes", encoding="utf-8")
    return tmp_path / "work"


def _call(oid: str, func: str, *args: dict[str, Any], **kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"op": "call", "id": oid, "func": func, "args": list(args), "kwargs": kwargs}


X = {"array": "x"}
INPUTS = {"x": np.array([1.0, -2.0, 3.0]), "p": np.array([1.0, 1.0]), "g": np.array([0.5, -1.0])}


def _run(workdir: Path, ops: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    out = run_harness({"kind": "functions", "module": "funcs.py", "ops": ops}, INPUTS, workdir)
    return out.arrays, out.result["info"]


def test_calls_convert_results_and_keep_going_after_failures(workdir: Path) -> None:
    ops = [
        _call("c0", "raises", X),
        _call("c1", "ok", X),
        _call("c2", "as_tuple", X),
        _call("c3", "as_dict", X),
        _call("c4", "as_list_of_numbers", X),
        _call("c5", "as_text", X),
        _call("c6", "as_none", X),
        _call("c7", "as_objects", X),
        _call("c8", "as_complex", X),
        _call("c9", "as_parameter", X),
        _call("c10", "as_np_scalar", X),
        _call("c11", "as_bools", X),
        _call("c12", "nope", X),
        _call("c13", "not_callable", X),
        _call("c14", "ok", {"value": 2.0}),
    ]
    arrays, info = _run(workdir, ops)
    rec = info["ops"]
    assert info["module"] == "hw3/funcs.py"
    assert rec["c0"] == {
        "ok": False,
        "error": "ZeroDivisionError: boom",
        "missing": False,
        "kind": None,
        "returned": None,
    }
    np.testing.assert_array_equal(arrays["c1"], [2.0, -4.0, 6.0])
    assert arrays["c1"].dtype == np.float64 and rec["c1"]["kind"] == "array"
    assert float(arrays["c2.0"]) == 2.0 and rec["c2"]["kind"] == "tuple"
    np.testing.assert_array_equal(arrays["c2.1"], [2.0, -4.0, 6.0])
    assert {k for k in arrays if k.startswith("c3.")} == {"c3.a", "c3.b"}  # odd keys are left out
    assert rec["c3"]["keys"] == ["a", "b", "bad key", "7"]
    np.testing.assert_array_equal(arrays["c4"], [1.0, 2.5, 1.0])
    assert rec["c5"]["error"] == "returned str" and not rec["c5"]["ok"]
    assert rec["c6"]["error"] == "returned NoneType"
    assert rec["c7"]["error"] == "returned a numpy array of dtype object"
    assert rec["c8"]["error"] == "returned a complex tensor"
    np.testing.assert_array_equal(arrays["c9"], [3.0, -6.0, 9.0])
    assert arrays["c10"].shape == () and float(arrays["c10"]) == 0.25
    np.testing.assert_array_equal(arrays["c11"], [1.0, 0.0, 1.0])
    assert rec["c12"]["missing"] and rec["c13"]["missing"]
    assert float(arrays["c14"]) == 4.0
    for oid in ("c0", "c5", "c6", "c7", "c8", "c12"):
        assert not any(k == oid or k.startswith(oid + ".") for k in arrays)


def test_a_function_mutating_its_input_affects_no_other_call(workdir: Path) -> None:
    arrays, _ = _run(workdir, [_call("c0", "mutate", X), _call("c1", "ok", X)])
    np.testing.assert_array_equal(arrays["c0"], [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(arrays["c1"], [2.0, -4.0, 6.0])
    np.testing.assert_array_equal(INPUTS["x"], [1.0, -2.0, 3.0])


def test_memory_error_is_not_swallowed(workdir: Path) -> None:
    with pytest.raises(MemoryError):
        _run(workdir, [_call("c0", "oom", X)])


def _opt(oid: str, cls: str, n_steps: int = 3, instances: int = 1) -> dict[str, Any]:
    return {
        "op": "optimizer",
        "id": oid,
        "instances": [{"cls": cls, "params": ["p", "x"], "args": [{"value": 0.1}], "kwargs": {}}] * instances,
        "steps": [{"instance": i % instances, "grads": ["g", "x"]} for i in range(n_steps)],
    }


def test_optimizer_trajectories_are_stacked_per_instance_and_parameter(workdir: Path) -> None:
    arrays, info = _run(workdir, [_opt("o0", "Opt", n_steps=5, instances=2)])
    assert info["ops"]["o0"]["ok"] and info["ops"]["o0"]["kind"] == "trajectory"
    assert sorted(arrays) == ["o0.0.0", "o0.0.1", "o0.1.0", "o0.1.1"]
    assert arrays["o0.0.0"].shape == (3, 2) and arrays["o0.1.1"].shape == (2, 3)
    np.testing.assert_allclose(arrays["o0.0.0"][-1], [1.0 - 3 * 0.05, 1.0 + 3 * 0.1])
    np.testing.assert_array_equal(INPUTS["p"], [1.0, 1.0])


def test_optimizer_failures_are_per_op(workdir: Path) -> None:
    arrays, info = _run(
        workdir,
        [
            _opt("o0", "Missing"),
            _opt("o1", "BadStep"),
            {
                **_opt("o2", "Opt"),
                "instances": [{"cls": "Opt", "params": ["p"], "kwargs": {"gamma": {"value": 1}}}],
            },
            _opt("o3", "Rebinds"),
        ],
    )
    rec = info["ops"]
    assert rec["o0"]["missing"]
    assert rec["o1"]["error"] == "ValueError: second step" and rec["o1"]["where"] == "call number 2 of step()"
    assert rec["o2"]["error"].startswith("TypeError") and rec["o2"]["where"] == "Opt(...)"
    # Rebinding list entries is not an in-place update: the arrays handed over stay unchanged.
    np.testing.assert_array_equal(arrays["o3.0.0"], np.ones((3, 2)))
    assert not any(k.startswith(("o0.", "o1.", "o2.")) for k in arrays)


def test_module_lookup_prefers_the_shallowest_exact_name(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "__MACOSX").mkdir()
    for rel in ("a/b/funcs.py", "a/funcs.py", "__MACOSX/funcs.py", "Funcs.py"):
        (tmp_path / rel).write_text("", encoding="utf-8")
    path, candidates = HARNESS.find_module(tmp_path, "funcs.py")
    assert path == tmp_path / "a" / "funcs.py"
    assert candidates == ["a/funcs.py", "a/b/funcs.py"]
    (tmp_path / "a" / "funcs.py").unlink()
    (tmp_path / "a" / "b" / "funcs.py").unlink()
    path, _ = HARNESS.find_module(tmp_path, "funcs.py")
    assert path == tmp_path / "Funcs.py"  # a Windows-cased name still counts


def test_missing_module_and_import_errors_raise_harness_errors(tmp_path: Path) -> None:
    job = {"kind": "functions", "module": "funcs.py", "ops": []}
    with pytest.raises(HarnessError) as exc:
        run_harness(job, {}, tmp_path)
    assert exc.value.code == "missing_function"
    (tmp_path / "funcs.py").write_text("import sys\nsys.exit(1)\n", encoding="utf-8")
    with pytest.raises(HarnessError) as exc:
        run_harness(job, {}, tmp_path)
    assert exc.value.code == "import_failed" and "__main__" in exc.value.message
