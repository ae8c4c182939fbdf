"""In-sandbox runner for function homework (activations, backprop, optimizers).

Standalone like main.py: standard library, numpy and torch only; `HarnessError` is injected by main.py.
It knows nothing about checks or expected values: it imports the student's module, performs the
operations the trusted side listed in the job, and returns what came back as float64 arrays.

Job (the part for this kind)
----------------------------
    {"kind": "functions", "module": "activations.py", "ops": [OP, ...]}

    ARG = {"array": "<input name>"} | {"value": <JSON literal>}
    {"op": "call", "id": "c0", "func": "sigmoid", "args": [ARG, ...], "kwargs": {"alpha": ARG}}
    {"op": "optimizer", "id": "o0",
     "instances": [{"cls": "Adam", "params": ["a0", "a1"], "args": [ARG...], "kwargs": {...}}, ...],
     "steps": [{"instance": 0, "grads": ["a2", "a3"]}, ...]}

Arrays are passed as fresh copies, so a function that mutates its input affects nothing else.

Outputs (float64 arrays, keyed by op id)
----------------------------------------
    call returning an array or a scalar   "<id>"
    call returning a tuple or list        "<id>.<i>"      one per item (an item may be a numeric list);
                                          a list of numbers, or of such lists all of one length
                                          (ndarray.tolist()), is one array: "<id>"
    call returning a dict                 "<id>.<key>"    for str keys made of [A-Za-z0-9_], up to 40
    optimizer                             "<id>.<instance>.<param>"  stacked over that instance's
                                          steps: shape (n_steps, *param.shape), the parameter array
                                          the harness passed in, read after each `step` (the array
                                          object itself: rebinding list entries is not an update).

Torch tensors (any subclass), numpy arrays and scalars of bool/int/float dtype, and Python numbers
become float64; anything else fails that op with "returned <type>".

info = {"module": relative path, "module_candidates": [...], "ops": {id: {"ok", "error", "missing",
"kind", "returned", ["keys"], ["where"]}}}; "error" is "ExcType: message" or "returned <what>" (a
value that is not numeric), "missing" says the function or class does not exist, "kind" is
"array" | "tuple" | "dict" | "trajectory", "returned" the returned type, "keys" a dict's keys,
"where" which constructor or step() call raised.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

if "HarnessError" not in globals():
    # main.py injects its HarnessError before this module runs; this stand-in only serves direct use.
    class HarnessError(Exception):  # noqa: N818 - the name is the protocol's
        def __init__(self, code: str, message: str, message_zh: str, **info: Any) -> None:
            super().__init__(message)
            self.code, self.message, self.message_zh, self.info = code, message, message_zh, info


# What graded code may import, in words; main.py injects its list (one list for both assignment kinds).
AVAILABLE_EN = "the standard library, numpy and torch"
AVAILABLE_ZH = "标准库、numpy 和 torch"


def progress(**stage: Any) -> None:
    """Placeholder: main.py sets the real one, which records the stage in the result file."""


MAX_ELEMENTS = 1_000_000
MAX_ITEMS = 32
_KEY = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_SKIP_DIRS = {"__MACOSX", "__pycache__", "node_modules", "venv", ".venv", "site-packages"}


# What a student's function may raise and fail only its own checks: sys.exit() or exit() inside a
# function (SystemExit) and a stray KeyboardInterrupt too, not just Exception. MemoryError is re-raised
# first: the whole evaluation is then out of memory.
_RAISED = (Exception, SystemExit, KeyboardInterrupt)


class _OpTimedOut(BaseException):
    """Raised into the student's code when an op outlives its budget (a BaseException, so that
    `except Exception:` in their code does not swallow it)."""


@contextlib.contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    """Raise _OpTimedOut in this (the main) thread once `seconds` of wall time have passed; 0: none.
    The run's own time limit, enforced from outside the sandbox, still bounds everything."""
    if seconds <= 0:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise _OpTimedOut

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Unconvertible(Exception):
    """A returned value that cannot become a float64 array."""


def find_module(root: Path, filename: str) -> tuple[Path | None, list[str]]:
    """Find `filename` under root: the shallowest match wins (then the first in sorted order).

    Exact-case names win over case-insensitive ones (`Activations.py` from Windows is accepted).
    Returns the chosen path and every candidate (relative, posix) for the report.
    """
    exact: list[tuple[int, str]] = []
    loose: list[tuple[int, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        rel_dir = Path(dirpath).relative_to(root)
        depth = len(rel_dir.parts)
        for name in filenames:
            if name.startswith("._"):
                continue
            rel = (rel_dir / name).as_posix()
            if name == filename:
                exact.append((depth, rel))
            elif name.lower() == filename.lower():
                loose.append((depth, rel))
    candidates = sorted(exact) or sorted(loose)
    if not candidates:
        return None, []
    return root / candidates[0][1], [c[1] for c in candidates]


def _import_student_module(path: Path, name: str) -> Any:
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HarnessError(
            "import_failed",
            f"Could not load {path.name} as a Python module.",
            f"无法将 {path.name} 作为 Python 模块加载。",
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except MemoryError:
        raise
    except (Exception, SystemExit) as e:
        sys.modules.pop(name, None)
        raise HarnessError(
            "import_failed",
            f"Importing {path.name} raised {type(e).__name__}: {e}. {_import_hint(e)[0]}",
            f"导入 {path.name} 时抛出 {type(e).__name__}: {e}。{_import_hint(e)[1]}",
            traceback=traceback.format_exc(limit=-6),
        ) from None
    return module


def _import_hint(e: BaseException) -> tuple[str, str]:
    if isinstance(e, ModuleNotFoundError):
        return (
            f"The grader has {AVAILABLE_EN}, not '{e.name}': remove that import (or move it under `if __name__ == \"__main__\":` if only your "
            f"own tests use it), or, if it is a module of your own, put its .py file in the zip.",
            f"评分环境提供{AVAILABLE_ZH}，但没有 '{e.name}'：请删除这个 "
            f'import（如果只有你自己的测试用到它，可以移到 `if __name__ == "__main__":` 下面）；如果它是你自己写的'
            f"模块，请把它的 .py 文件一并放进 zip。",
        )
    if isinstance(e, ImportError) and "attempted relative import" in str(e):
        return (
            "The grader imports your file on its own, not as part of a package: write the import without "
            "the dot (`from helpers import f`, not `from .helpers import f`).",
            "评分程序单独导入你的文件，而不是作为包导入：请去掉导入中的点（写 `from helpers import f`，"
            "不要写 `from .helpers import f`）。",
        )
    if isinstance(e, SystemExit):
        return (
            'Your file calls exit() when imported; put test code under `if __name__ == "__main__":`.',
            '你的文件在导入时调用了 exit()；请把测试代码放到 `if __name__ == "__main__":` 之下。',
        )
    return (
        "Code at the top level of your file runs when the grader imports it; put tests and experiments "
        'under `if __name__ == "__main__":`.',
        '评分程序导入文件时会执行顶层代码；请把测试和实验代码放到 `if __name__ == "__main__":` 之下。',
    )


def to_float64(value: Any) -> np.ndarray:
    """Convert a returned value (tensor, ndarray, number, numeric list) to a float64 array."""
    if isinstance(value, torch.Tensor):
        t = torch.Tensor.as_subclass(value, torch.Tensor).detach()
        if t.is_complex():
            raise _Unconvertible("a complex tensor")
        if t.is_sparse:
            t = t.to_dense()
        arr = t.cpu().to(torch.float64).numpy()
    elif isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise _Unconvertible(f"a numpy array of dtype {arr.dtype}")
    elif isinstance(value, bool | int | float):
        arr = np.asarray(value)
    elif isinstance(value, list):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise _Unconvertible("a list that is not a numeric array") from None
    else:
        raise _Unconvertible(type(value).__name__)
    if arr.size > MAX_ELEMENTS:
        raise _Unconvertible(f"an array of {arr.size} elements (too large)")
    return np.array(arr, dtype=np.float64, copy=True)


def _numeric_list(value: list[Any], depth: int = 0) -> bool:
    """A list of Python numbers, or of such lists all of one length (what ndarray.tolist() gives):
    one array, not a tuple of results ([loss, dlogits] with an array or a number beside a list is)."""
    if depth > 8:
        return False
    if all(isinstance(v, bool | int | float) for v in value):
        return True
    if not all(isinstance(v, list) for v in value) or len({len(v) for v in value}) != 1:
        return False
    return all(_numeric_list(v, depth + 1) for v in value)


def _type_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"torch.Tensor{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape} {value.dtype}"
    return type(value).__name__


def _arg(spec: dict[str, Any], inputs: dict[str, np.ndarray]) -> Any:
    if "array" in spec:
        return np.array(inputs[spec["array"]], copy=True)
    return spec["value"]


def _error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= 500 else text[:497] + "..."


def _run_call(
    module: Any, op: dict[str, Any], inputs: dict[str, np.ndarray], arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    oid = op["id"]
    rec: dict[str, Any] = {"ok": False, "error": None, "missing": False, "kind": None, "returned": None}
    func = getattr(module, op["func"], None)
    if not callable(func):
        rec["missing"] = True
        rec["error"] = f"no function named {op['func']}"
        return rec
    args = [_arg(a, inputs) for a in op.get("args", [])]
    kwargs = {k: _arg(a, inputs) for k, a in op.get("kwargs", {}).items()}
    try:
        result = func(*args, **kwargs)
    except MemoryError:
        raise
    except _RAISED as e:
        rec["error"] = _error(e)
        return rec
    rec["returned"] = _type_name(result)
    out: dict[str, np.ndarray] = {}
    try:
        if isinstance(result, tuple | list) and not (isinstance(result, list) and _numeric_list(result)):
            rec["kind"] = "tuple"
            if len(result) > MAX_ITEMS:
                raise _Unconvertible(f"a {type(result).__name__} of {len(result)} items")
            for i, item in enumerate(result):
                out[f"{oid}.{i}"] = to_float64(item)
        elif isinstance(result, dict):
            rec["kind"] = "dict"
            rec["keys"] = [str(k)[:40] for k in list(result)[:MAX_ITEMS]]
            for key, item in list(result.items())[:MAX_ITEMS]:
                if isinstance(key, str) and _KEY.match(key):
                    out[f"{oid}.{key}"] = to_float64(item)
        else:
            rec["kind"] = "array"
            out[oid] = to_float64(result)
    except MemoryError:
        raise
    except _Unconvertible as e:
        rec["error"] = f"returned {e}"
        return rec
    except _RAISED as e:  # a student object's __array__ or __len__ may raise anything
        rec["error"] = f"returned {rec['returned']} that could not be read: {_error(e)}"
        return rec
    arrays.update(out)
    rec["ok"] = True
    return rec


def _run_optimizer(
    module: Any, op: dict[str, Any], inputs: dict[str, np.ndarray], arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    oid = op["id"]
    rec: dict[str, Any] = {
        "ok": False,
        "error": None,
        "missing": False,
        "kind": "trajectory",
        "returned": None,
    }
    instances: list[Any] = []
    param_lists: list[list[np.ndarray]] = []
    for spec in op["instances"]:
        cls = getattr(module, spec["cls"], None)
        if not callable(cls):
            rec["missing"] = True
            rec["error"] = f"no class named {spec['cls']}"
            return rec
        params = [np.array(inputs[name], dtype=np.float64, copy=True) for name in spec["params"]]
        args = [_arg(a, inputs) for a in spec.get("args", [])]
        kwargs = {k: _arg(a, inputs) for k, a in spec.get("kwargs", {}).items()}
        try:
            instances.append(cls(params, *args, **kwargs))
        except MemoryError:
            raise
        except _RAISED as e:
            rec["error"] = _error(e)
            rec["where"] = f"{spec['cls']}(...)"
            return rec
        # Keep our own references: the contract is that step() updates these very arrays in place, so a
        # step that rebinds entries of the list it was given does not count.
        param_lists.append(list(params))
    history: list[list[list[np.ndarray]]] = [[[] for _ in p] for p in param_lists]
    for n, step in enumerate(op["steps"]):
        i = int(step["instance"])
        grads = [np.array(inputs[name], dtype=np.float64, copy=True) for name in step["grads"]]
        try:
            instances[i].step(grads)
        except MemoryError:
            raise
        except _RAISED as e:
            rec["error"] = _error(e)
            rec["where"] = f"call number {n + 1} of step()"
            return rec
        for j, p in enumerate(param_lists[i]):
            history[i][j].append(p.copy())
    for i, per_param in enumerate(history):
        for j, snapshots in enumerate(per_param):
            shape = param_lists[i][j].shape
            arrays[f"{oid}.{i}.{j}"] = np.stack(snapshots) if snapshots else np.zeros((0, *shape))
    rec["ok"] = True
    return rec


def run(job: dict[str, Any], inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Import the student's module from the working directory and perform the job's ops."""
    filename = str(job["module"])
    root = Path.cwd()
    path, candidates = find_module(root, filename)
    if path is None:
        raise HarnessError(
            "missing_function",
            f"Your zip has no {filename}. Put your functions in a file named exactly {filename} "
            "(at the top of the zip or in one folder).",
            f"你的 zip 中没有 {filename}。请把函数写在名为 {filename} 的文件中"
            "（放在 zip 根目录或一个文件夹内）。",
        )
    progress(what="import", file=path.relative_to(root).as_posix())
    module = _import_student_module(path, Path(filename).stem)
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {
        "module": path.relative_to(root).as_posix(),
        "module_candidates": candidates[:10],
        "ops": {},
    }
    budget = float(job.get("call_budget_s") or 0)
    for op in job["ops"]:
        progress(what="op", id=op["id"])
        if op["op"] not in ("call", "optimizer"):
            raise ValueError(f"unknown op {op['op']!r}")
        run_op = _run_call if op["op"] == "call" else _run_optimizer
        try:
            with _time_budget(budget):
                rec = run_op(module, op, inputs, arrays)
        except _OpTimedOut:
            rec = {"ok": False, "error": None, "missing": False, "timed_out": True, "budget_s": budget}
            for key in [k for k in arrays if k == op["id"] or k.startswith(f"{op['id']}.")]:
                del arrays[key]
        info["ops"][op["id"]] = rec
    return arrays, info
