"""In-sandbox part of model grading: load the student's network and weights, run it on the inputs.

Standalone (numpy, torch, stdlib; pandas/sklearn only when a transformer is used). Everything that
unpickles or imports student files happens here, inside the sandbox. `HarnessError` is injected by
main.py. The trusted side's plan (job["plan"]) says which files to use; this module finds the class,
infers constructor arguments from the weights, applies the preprocessing chain and returns
`{"pred": outputs}` plus what it discovered.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import pickle
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HarnessError: Any = Exception  # placeholder; main.py injects the real class


# What graded code may import, in words; main.py injects its list (one list for both assignment kinds).
AVAILABLE_EN = "the standard library, numpy and torch"
AVAILABLE_ZH = "标准库、numpy 和 torch"


def progress(**stage: Any) -> None:
    """Placeholder: main.py sets the real one, which records the stage in the result file."""


def hit_process_limit(exc: str) -> bool:
    """Placeholder: main.py injects its own (is "Type: message" the process/thread limit?)."""
    return False


def allocation_failed(e: BaseException) -> bool:
    """Placeholder: main.py injects its own (out of memory on the CPU?)."""
    return isinstance(e, MemoryError)


INPUT_ALIASES = (
    "input_dim",
    "in_features",
    "input_size",
    "in_dim",
    "n_features",
    "num_features",
    "input_features",
    "n_inputs",
    "num_inputs",
    "in_channels",
    "input_channels",
    "feature_dim",
    "in_size",
)
OUTPUT_ALIASES = (
    "output_dim",
    "num_classes",
    "class_num",
    "output_size",
    "out_features",
    "n_classes",
    "num_class",
    "out_dim",
    "n_outputs",
    "num_outputs",
    "classes",
    "output_features",
    "n_class",
    "out_size",
)
HIDDEN_ALIASES = ("hidden_dim", "hidden_size", "hidden", "n_hidden", "hidden_units", "hidden_features")
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "network", "weights")


def _err(code: str, en: str, zh: str, **info: Any) -> Exception:
    return HarnessError(code, en, zh, **info)


# --- student modules -------------------------------------------------------------------------------


class _Imports:
    """Imports the student's .py files by their plain module names (pickles refer to them so)."""

    def __init__(self, root: Path, py_files: list[str]) -> None:
        self.root = root
        self.py_files = py_files
        self.modules: dict[str, Any] = {}
        self.failures: dict[str, str] = {}
        # Files named like the standard library or an installed package (torch.py, sitecustomize.py)
        # are never imported by the discovery sweep; the student's own imports still get the real ones.
        self.shadowing = {
            rel
            for rel in py_files
            if Path(rel).stem in sys.stdlib_module_names
            or Path(rel).stem in ("sitecustomize", "usercustomize")
            or importlib.util.find_spec(Path(rel).stem) is not None
        }
        # Each file's folder, and the root after them (a student's `from models.net import Net`, or a
        # pickle of a class from a package, imports from there even where no .py file is at the root).
        for folder in [str(root), *(str((root / rel).parent) for rel in py_files)]:
            if folder not in sys.path:
                sys.path.insert(0, folder)

    def _package_name(self, rel: str) -> str | None:
        """`models.net` for models/net.py in a package (its folders up to the first without an
        __init__.py), with that first folder put on sys.path; None for a file outside packages."""
        *folders, file = Path(rel).with_suffix("").parts
        start = len(folders)
        while start > 0 and (self.root.joinpath(*folders[:start]) / "__init__.py").is_file():
            start -= 1
        if start == len(folders) or not all(p.isidentifier() for p in folders[start:]):
            return None
        base = str(self.root.joinpath(*folders[:start]))
        if base not in sys.path:
            sys.path.insert(0, base)
        return ".".join([*folders[start:], *([] if file == "__init__" else [file])])

    def load(self, rel: str) -> Any:
        if rel in self.modules:
            return self.modules[rel]
        dotted = self._package_name(rel)
        if dotted is not None:
            # Imported as the student's own code imports it, so its relative imports work.
            progress(what="import", file=rel)
            try:
                module = importlib.import_module(dotted)
            except BaseException as e:
                self.failures[rel] = f"{type(e).__name__}: {e}"
                raise
            self.modules[rel] = module
            return module
        path = self.root / rel
        name = path.stem
        if not name.isidentifier():
            name = "student_" + "".join(c if c.isalnum() else "_" for c in name)
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__file__", None) == str(path):
            self.modules[rel] = existing
            return existing
        if existing is not None:
            # A student file named like an already-imported library (torch.py, numpy.py...): load it
            # under a private name so it cannot replace the real library.
            name = f"student_{name}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        progress(what="import", file=rel)
        for retry in (False, True):
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
                break
            except BaseException as e:
                sys.modules.pop(name, None)
                if not retry and self._beside_the_file(e, path):
                    # A script in a folder that reads data/x.csv relative to itself at import time
                    # (it was run from its own folder when written): import it again from there, and
                    # stay there for the reads that come later.
                    os.chdir(path.parent)
                    continue
                self.failures[rel] = f"{type(e).__name__}: {e}"
                raise
        self.modules[rel] = module
        return module

    def _beside_the_file(self, e: BaseException, path: Path) -> bool:
        """`e` is a relative file missing from the working directory that is there beside `path`."""
        missing = getattr(e, "filename", None)
        if missing is None and isinstance(e, FileNotFoundError):  # numpy.loadtxt: "data/x.csv not found."
            found = re.fullmatch(r"(.+) not found\.", str(e))
            missing = found.group(1) if found else None
        if not isinstance(e, FileNotFoundError) or not isinstance(missing, str) or os.path.isabs(missing):
            return False
        return Path.cwd() != path.parent and (path.parent / missing).exists()

    def load_all(self) -> None:
        for rel in self.py_files:
            if rel in self.shadowing:
                continue
            try:
                self.load(rel)
            except MemoryError:
                raise
            except (Exception, SystemExit):
                continue

    def classes(self) -> list[tuple[str, type]]:
        """nn.Module subclasses defined in the student's files, deduplicated."""
        seen: set[int] = set()
        out = []
        for rel, module in self.modules.items():
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, nn.Module)
                    and obj.__module__ == module.__name__
                    and id(obj) not in seen
                ):
                    seen.add(id(obj))
                    out.append((rel, obj))
        return out

    def expose_in_main(self) -> None:
        """Whole-model pickles saved from a training script refer to `__main__.ClassName`."""
        main = sys.modules["__main__"]
        for _, cls in self.classes():
            if not hasattr(main, cls.__name__):
                setattr(main, cls.__name__, cls)


def _import_failure_error(imports: _Imports, rel: str, exc: str) -> Exception:
    if exc.startswith("MemoryError"):
        return MemoryError(exc)
    missing = ""
    if exc.startswith(("FileNotFoundError", "OSError")):
        missing = exc.split(":", 1)[-1].strip()
    if hit_process_limit(exc):
        return _err(
            "process_limit",
            f"Importing {rel} started too many processes or threads ({exc}), past the grader's limit. Don't "
            f'start processes or threads at import time: put that code under `if __name__ == "__main__":`, '
            f"and use DataLoader with num_workers=0 in code the grader imports.",
            f"导入 {rel} 时创建了过多的进程或线程（{exc}），超过了评测的上限。不要在导入时启动进程或线程："
            f'请把这些代码放到 `if __name__ == "__main__":` 下面；评测会导入的代码中 DataLoader 请使用 num_workers=0。',
            file=rel,
        )
    if "attempted relative import" in exc:
        return _err(
            "import_failed",
            f"Importing {rel} failed: {exc}. The grader imports each of your files on its own, not as part of "
            f"a package, so write the import without the dot: `from layers import Block`, not "
            f"`from .layers import Block` (the file stays where it is, beside {rel.rsplit('/', 1)[-1]}).",
            f"导入 {rel} 失败：{exc}。评测程序单独导入你的每个文件，而不是作为包导入，所以请去掉导入中的点："
            f"写 `from layers import Block`，不要写 `from .layers import Block`（文件位置不变，仍与 "
            f"{rel.rsplit('/', 1)[-1]} 放在一起）。",
            file=rel,
        )
    if exc.startswith(("ModuleNotFoundError", "ImportError")):
        name = re.search(r"No module named '([^']+)'", exc)
        module = name.group(1).split(".")[0] if name else None
        what = f"'{module}'" if module else "it"
        return _err(
            "import_failed",
            f"Importing {rel} failed: {exc}. The grader has {AVAILABLE_EN}, not {what}. If only "
            f"training uses it (torchvision's datasets and transforms, say), move that import into the "
            f'training code under `if __name__ == "__main__":`; if it is a module of your own, put its '
            f".py file in the zip.",
            f"导入 {rel} 失败：{exc}。评测环境提供{AVAILABLE_ZH}，但没有 {what}。如果只有训练用到它（例如 torchvision 的 "
            f'datasets 和 transforms），请把这个 import 移到 `if __name__ == "__main__":` 下的训练代码里；'
            f"如果它是你自己写的模块，请把它的 .py 文件一并放进压缩包。",
            file=rel,
        )
    if missing:
        return _err(
            "import_failed",
            f"Importing {rel} failed because it reads a file that is not in the zip: {missing}. Either add "
            f'that file to the zip, or move the code that reads it under `if __name__ == "__main__":` so '
            f"it only runs when you train.",
            f"导入 {rel} 时读取了压缩包里没有的文件：{missing}。请把该文件一起打包，或者把读取它的代码放到 "
            f'`if __name__ == "__main__":` 下面，使它只在训练时运行。',
            file=rel,
        )
    return _err(
        "import_failed",
        f"Importing {rel} failed: {exc}. Code at the top level of your files runs when the grader imports "
        f'them; put training code under `if __name__ == "__main__":`.',
        f"导入 {rel} 失败：{exc}。评测程序导入你的文件时会执行顶层代码；请把训练代码放到 "
        f'`if __name__ == "__main__":` 下面。',
        file=rel,
    )


# --- weights ---------------------------------------------------------------------------------------


def _strip_prefix(sd: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in sd.items()}, True
    return sd, False


def _as_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
    return None


def _load_weights(path: Path, imports: _Imports, device: str) -> tuple[str, Any]:
    """-> ("state_dict", dict) or ("module", nn.Module)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return "state_dict", load_file(str(path), device="cpu")
        except Exception as e:
            raise _err(
                "load_failed",
                f"{path.name} is not a readable .safetensors file ({e}).",
                f"{path.name} 不是可读取的 .safetensors 文件（{e}）。",
            ) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as first:
        # Not a plain state_dict: a whole pickled model. Unpickling runs the student's code, which is
        # fine here (we are inside the sandbox). Classes pickled from a script live in __main__.
        imports.load_all()
        imports.expose_in_main()
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e:
            if imports.failures:
                rel, exc = next(iter(imports.failures.items()))
                raise _import_failure_error(imports, rel, exc) from None
            why = str(e).rstrip(". ")
            raise _err(
                "load_failed",
                f"Could not load {path.name}: {type(e).__name__}: {why}. Save the weights with "
                f"torch.save(model.state_dict(), '{path.name}').",
                f"无法加载 {path.name}：{type(e).__name__}: {why}。请用 "
                f"torch.save(model.state_dict(), '{path.name}') 保存权重。",
                first_error=f"{type(first).__name__}: {first}",
            ) from None
    if isinstance(obj, nn.Module):
        return "module", obj
    sd = _as_state_dict(obj)
    if sd is None:
        raise _err(
            "load_failed",
            f"{path.name} holds a {type(obj).__name__}, not a model or a state_dict. Save it with "
            f"torch.save(model.state_dict(), '{path.name}').",
            f"{path.name} 里是 {type(obj).__name__}，既不是模型也不是 state_dict。请用 "
            f"torch.save(model.state_dict(), '{path.name}') 保存。",
        )
    return "state_dict", sd


# --- finding the class -----------------------------------------------------------------------------


def _shape_summary(sd: dict[str, torch.Tensor], limit: int = 8) -> str:
    items = [f"{k} {tuple(v.shape)}" for k, v in list(sd.items())[:limit]]
    if len(sd) > limit:
        items.append(f"... ({len(sd)} tensors)")
    return ", ".join(items)


def _infer_dims(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    mats = [(k, v) for k, v in sd.items() if k.endswith("weight") and v.dim() >= 2]
    dims: dict[str, int] = {}
    if mats:
        first = mats[0][1]
        dims["input"] = int(first.shape[1])
        dims["hidden"] = int(first.shape[0])
        dims["output"] = int(mats[-1][1].shape[0])
    return dims


def _kwarg_candidates(cls: type, dims: dict[str, int]) -> list[dict[str, Any]]:
    try:
        sig = inspect.signature(cls)  # the constructor's parameters, without self
    except (TypeError, ValueError):
        return [{}]
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    inferred: dict[str, Any] = {}
    required_unknown = []
    for p in params:
        role = (
            "input"
            if p.name in INPUT_ALIASES
            else "output"
            if p.name in OUTPUT_ALIASES
            else "hidden"
            if p.name in HIDDEN_ALIASES
            else None
        )
        if role and role in dims:
            inferred[p.name] = dims[role]
        elif p.default is inspect.Parameter.empty:
            required_unknown.append(p.name)
    if required_unknown:
        return []
    with_defaults = {
        k: v for k, v in inferred.items() if sig.parameters[k].default is inspect.Parameter.empty
    }
    out = [with_defaults]
    if inferred != with_defaults:
        out.append(inferred)
    return out


def _compare(model: nn.Module, sd: dict[str, torch.Tensor]) -> str | None:
    """None if `model` takes `sd` exactly; else what differs."""
    own = model.state_dict()
    skip = ("num_batches_tracked",)
    own_keys = {k for k in own if not k.endswith(skip)}
    sd_keys = {k for k in sd if not k.endswith(skip)}
    missing = sorted(own_keys - sd_keys)
    unexpected = sorted(sd_keys - own_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing in weights: {', '.join(missing[:4])}")
        if unexpected:
            parts.append(f"not in the class: {', '.join(unexpected[:4])}")
        return "; ".join(parts)
    for k in sorted(own_keys):
        if tuple(own[k].shape) != tuple(sd[k].shape):
            return f"{k}: class has {tuple(own[k].shape)}, weights have {tuple(sd[k].shape)}"
    return None


def _module_level_model(imports: _Imports) -> tuple[str, str, str] | None:
    """(file, variable, type) of an nn.Module instance made at the top level of a student file
    (`model = nn.Sequential(...)`), the first found; None if there is none."""
    for rel, module in imports.modules.items():
        for var, obj in vars(module).items():
            if isinstance(obj, nn.Module) and not var.startswith("_"):
                return rel, var, type(obj).__name__
    return None


def _manifest_example(rel: str, cls: str, kwargs: dict[str, Any], weights: str) -> str:
    kw = ", ".join(f"{k} = {v}" for k, v in kwargs.items())
    lines = ["[model]", f'file = "{rel}"', f'name = "{cls}"']
    if kw:
        lines.append(f"kwargs = {{ {kw} }}")
    lines.append(f'weights = "{weights}"')
    return "\n".join(lines)


def _find_model(
    imports: _Imports, sd: dict[str, torch.Tensor], weights_rel: str
) -> tuple[nn.Module, dict[str, Any]]:
    imports.load_all()
    classes = imports.classes()
    dims = _infer_dims(sd)
    matches: list[tuple[str, type, dict[str, Any], nn.Module]] = []
    misses: list[str] = []
    for rel, cls in classes:
        candidates = _kwarg_candidates(cls, dims)
        if not candidates:
            misses.append(f"{rel}:{cls.__name__} (constructor arguments could not be inferred)")
            continue
        why = "could not be built"
        for kwargs in candidates:
            progress(what="build", name=cls.__name__)
            try:
                model = cls(**kwargs)
            except Exception as e:
                why = f"{cls.__name__}(**{kwargs}) raised {type(e).__name__}: {e}"
                continue
            diff = _compare(model, sd)
            if diff is None:
                matches.append((rel, cls, kwargs, model))
                break
            why = diff
        else:
            misses.append(f"{rel}:{cls.__name__} ({why})")
    if len(matches) > 1:
        # The same network defined twice (e.g. copied into train.py and model.py) is not ambiguous.
        sources = set()
        for _, cls, _, _ in matches:
            try:
                sources.add(inspect.getsource(cls))
            except (OSError, TypeError):
                sources.add(str(id(cls)))
        if len(sources) > 1:
            names = [f"{rel}:{cls.__name__}" for rel, cls, _, _ in matches]
            rel, cls, kwargs, _ = matches[0]
            example = _manifest_example(rel, cls.__name__, kwargs, weights_rel)
            raise _err(
                "ambiguous_model",
                f"Several classes match the weights in {weights_rel}: {', '.join(names)}. Say which one in a "
                f"homework.toml at the top of the zip, for example:\n{example}",
                f"有多个类与 {weights_rel} 中的权重匹配：{', '.join(names)}。请在压缩包根目录添加 homework.toml "
                f"指明用哪一个，例如：\n{example}",
                candidates=names,
            )
    if not matches:
        if not classes and imports.failures:
            rel, exc = next(iter(imports.failures.items()))
            raise _import_failure_error(imports, rel, exc)
        if not classes and (instance := _module_level_model(imports)) is not None:
            rel, var, typename = instance
            example = f'[model]\nfile = "{rel}"\nname = "build_model"\nweights = "{weights_rel}"'
            raise _err(
                "no_model_found",
                f"{rel} builds the network as a variable ({var} = {typename}(...)) and defines no nn.Module "
                f"class, so the grader has nothing it can construct. Put the construction in a function, "
                f"`def build_model():` returning the same {typename}(...), and name it in a homework.toml "
                f"at the top of the zip:\n{example}",
                f"{rel} 把网络建成了一个变量（{var} = {typename}(...)），没有定义 nn.Module 类，评测无法构建它。"
                f"请把构建代码放进一个函数 `def build_model():`，返回同样的 {typename}(...)，并在压缩包根目录的 "
                f"homework.toml 中指定它：\n{example}",
            )
        example = _manifest_example(
            "model.py",
            "YourModel",
            {"input_dim": dims.get("input", "?"), "output_dim": dims.get("output", "?")},
            weights_rel,
        )
        found = "; ".join(misses) if misses else "no nn.Module subclass in any .py file"
        found_zh = "; ".join(misses) if misses else "任何 .py 文件中都没有 nn.Module 子类"
        failed = "".join(f" {rel} could not be imported ({exc})." for rel, exc in imports.failures.items())
        failed_zh = "".join(f" {rel} 无法导入（{exc}）。" for rel, exc in imports.failures.items())
        raise _err(
            "no_model_found",
            f"No class in your .py files matches the weights in {weights_rel} "
            f"({_shape_summary(sd)}). Candidates: {found}.{failed} Make sure the zip contains the file that "
            f"defines your network, unchanged since training, or add a homework.toml such as:\n{example}",
            f"你的 .py 文件中没有与 {weights_rel}（{_shape_summary(sd)}）中权重匹配的类。候选：{found_zh}。"
            f"{failed_zh} 请确认压缩包里有定义网络的文件且与训练时一致，或添加如下 homework.toml：\n{example}",
            candidates=misses,
        )
    rel, cls, kwargs, model = matches[0]
    return model, {"file": rel, "class": cls.__name__, "kwargs": kwargs}


def _build_from_manifest(imports: _Imports, m: dict[str, Any]) -> tuple[nn.Module | None, dict[str, Any]]:
    rel = m["file"]
    try:
        module = imports.load(rel)
    except BaseException:
        raise _import_failure_error(imports, rel, imports.failures.get(rel, "unknown error")) from None
    name = m.get("name")
    if not name:
        return None, {"file": rel}
    obj = getattr(module, name, None)
    if obj is None:
        classes = [c.__name__ for _, c in imports.classes()]
        raise _err(
            "no_model_found",
            f"homework.toml names {name!r}, but {rel} defines no such name. nn.Module classes found: "
            f"{', '.join(classes) or 'none'}.",
            f"homework.toml 指定了 {name!r}，但 {rel} 中没有这个名字。找到的 nn.Module 类：{', '.join(classes) or '无'}。",
        )
    kwargs = dict(m.get("kwargs") or {})
    progress(what="build", name=name)
    try:
        model = obj(**kwargs)
    except Exception as e:
        raise _err(
            "load_failed",
            f"{name}(**{kwargs}) raised {type(e).__name__}: {e}. Check `kwargs` in homework.toml.",
            f"{name}(**{kwargs}) 抛出 {type(e).__name__}: {e}。请检查 homework.toml 中的 kwargs。",
        ) from None
    if not isinstance(model, nn.Module):
        raise _err(
            "load_failed",
            f"{name} returned a {type(model).__name__}, not a torch.nn.Module.",
            f"{name} 返回的是 {type(model).__name__}，不是 torch.nn.Module。",
        )
    return model, {"file": rel, "class": name, "kwargs": kwargs}


# --- preprocessing and inference --------------------------------------------------------------------


def _load_transformer(path: Path) -> Any:
    try:
        import joblib

        return joblib.load(str(path))
    except Exception:
        with open(path, "rb") as f:
            return pickle.load(f)


def _apply_transformer(transformer: Any, x: np.ndarray, columns: list[str] | None) -> np.ndarray:
    """transformer.transform() on a DataFrame with the dataset's column names, as students fit it."""
    import warnings

    frame: Any = x
    if columns:
        import pandas as pd

        frame = pd.DataFrame(x, columns=columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(transformer.transform(frame), dtype=np.float32)


def _tensor_to_numpy(out: torch.Tensor) -> np.ndarray:
    # as_subclass: a tensor subclass cannot run its own overrides on the way out
    t = torch.Tensor.as_subclass(out, torch.Tensor).detach().to("cpu")
    if t.dtype in (torch.float16, torch.bfloat16, torch.float64):
        t = t.float()
    return np.asarray(t.numpy()).copy()


def _to_numpy(out: Any) -> np.ndarray:
    """The model's outputs for one batch as an array."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], (torch.Tensor, np.ndarray)):
        out = out[0]
    if isinstance(out, torch.Tensor):
        return _tensor_to_numpy(out)
    if isinstance(out, np.ndarray) and out.dtype.kind in "biuf":
        return out
    raise _err(
        "bad_output",
        f"Your model returned {type(out).__name__}; it must return a torch tensor of scores (n, classes) "
        f"or class indices (n,).",
        f"你的模型返回了 {type(out).__name__}；应返回 (n, 类别数) 的分数张量或 (n,) 的类别下标。",
    )


def _preprocessed(out: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """What a preprocess function returned, as the float32 array the model gets: a NumPy array, a
    tensor, a DataFrame or nested lists of numbers all do (HOMEWORK.md: "whatever the chain returns
    becomes a float32 tensor for the model")."""
    try:
        if isinstance(out, torch.Tensor):
            out = _tensor_to_numpy(out)
        elif hasattr(out, "to_numpy") and callable(out.to_numpy):  # pandas DataFrame or Series
            out = out.to_numpy()
        arr = np.asarray(out, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _err(
            "bad_output",
            f"Your preprocess function {name} returned {type(out).__name__}, which is not an array of numbers "
            f"({type(e).__name__}: {str(e)[:200]}). Return the preprocessed inputs as a NumPy array, a torch "
            f"tensor or a DataFrame, one row per sample (it got an array of shape {shape}).",
            f"你的预处理函数 {name} 返回了 {type(out).__name__}，不是数值数组（{type(e).__name__}: {str(e)[:200]}）。"
            f"请把预处理后的输入以 NumPy 数组、torch 张量或 DataFrame 返回，每个样本一行（它收到的数组形状为 {shape}）。",
        ) from None
    if arr.ndim == 0 or arr.shape[0] != shape[0]:
        raise _err(
            "bad_output",
            f"Your preprocess function {name} returned shape {arr.shape} for {shape[0]} samples; it must return "
            f"one row per sample, in the order it got them (it got shape {shape}).",
            f"{shape[0]} 个样本，你的预处理函数 {name} 返回的形状是 {arr.shape}；应按收到的顺序每个样本返回一行"
            f"（它收到的形状为 {shape}）。",
        )
    return arr


def _preprocess(
    x: np.ndarray, job: dict[str, Any], imports: _Imports, root: Path, info: dict[str, Any]
) -> np.ndarray:
    plan = job["plan"]
    columns = job.get("columns")
    candidates = plan.get("transformer_candidates") or (
        [plan["transformer_auto"]] if plan.get("transformer_auto") else []
    )
    if candidates and not plan.get("transformer"):
        # The pickles beside the model (no manifest names one): one that transforms these features
        # without changing their shape is the scaler the student meant; with two such, none is guessed.
        fitting: dict[str, np.ndarray] = {}
        skipped: list[str] = []
        for rel in candidates:
            try:
                xt = _apply_transformer(_load_transformer(root / rel), x, columns)
                if xt.shape != x.shape:
                    raise ValueError(f"it changes the shape {x.shape} -> {xt.shape}")
                fitting[rel] = xt
            except Exception as e:
                skipped.append(f"{rel}: {type(e).__name__}: {str(e)[:200]}")
        if skipped:
            info["transformer_auto_skipped"] = "; ".join(skipped)
        if len(fitting) == 1:
            ((rel, x),) = fitting.items()
            info["transformer"] = rel
            info["transformer_auto"] = True
            info["transformer_auto_among"] = len(candidates)
        elif fitting:
            info["transformer_auto_ambiguous"] = sorted(fitting)
    if plan.get("transformer"):
        rel = plan["transformer"]
        try:
            transformer = _load_transformer(root / rel)
        except Exception as e:
            raise _err(
                "load_failed",
                f"Could not load the transformer {rel}: {type(e).__name__}: {e}.",
                f"无法加载预处理器 {rel}：{type(e).__name__}: {e}。",
            ) from None
        if not hasattr(transformer, "transform"):
            raise _err(
                "load_failed",
                f"{rel} holds a {type(transformer).__name__}, which has no .transform() method.",
                f"{rel} 里是 {type(transformer).__name__}，没有 .transform() 方法。",
            )
        try:
            x = _apply_transformer(transformer, x, columns)
        except Exception as e:
            raise _err(
                "load_failed",
                f"{rel}.transform() failed on the test features: {type(e).__name__}: {e}.",
                f"{rel}.transform() 处理测试特征时失败：{type(e).__name__}: {e}。",
            ) from None
        info["transformer"] = rel
    if plan.get("normalize"):
        mean, std = plan["normalize"]
        x = ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)
        info["normalize"] = [mean, std]
    if plan.get("preprocess"):
        p = plan["preprocess"]
        try:
            module = imports.load(p["file"])
        except BaseException:
            raise _import_failure_error(imports, p["file"], imports.failures.get(p["file"], "?")) from None
        fn = getattr(module, p["name"], None)
        if not callable(fn):
            raise _err(
                "load_failed",
                f"homework.toml names preprocess function {p['name']!r}, but {p['file']} has no such function.",
                f"homework.toml 指定的预处理函数 {p['name']!r} 在 {p['file']} 中不存在。",
            )
        x = _preprocessed(fn(np.array(x, dtype=np.float32)), p["name"], tuple(x.shape))
        info["preprocess"] = f"{p['file']}:{p['name']}"
    return x


def _infer(model: nn.Module, x: np.ndarray, device: str, batch: int) -> np.ndarray:
    outs = []
    # Batches are views, not copies: the inputs are this process's private copy-on-write pages
    # (inherited from the zygote, or a MAP_PRIVATE mapping), so a forward() that works in place
    # changes only this evaluation's view of them. Copying 31 MB of MNIST into fresh pages cost
    # ~11,000 page faults in a freshly forked evaluation, more than the model's own work.
    if not x.flags.writeable:
        x = np.array(x, dtype=np.float32)
    # The contract's inputs are float32; a model whose parameters are float64 (trained after
    # torch.set_default_dtype(torch.float64), say) gets them in its own dtype, as its training did
    # ("mat1 and mat2 must have the same dtype" otherwise).
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[i : i + batch], dtype=np.float32)).to(device)
            if dtype != torch.float32:
                xb = xb.to(dtype)
            outs.append(_to_numpy(model(xb)))
    if not outs:
        return np.zeros((0,), dtype=np.float32)
    shapes = {o.shape[1:] for o in outs}
    if len(shapes) != 1:
        raise _err(
            "bad_output",
            "Your model returned outputs of different shapes for different batches.",
            "你的模型对不同批次返回了形状不同的输出。",
        )
    return np.concatenate(outs)


def run(job: dict[str, Any], inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load the model the plan describes, preprocess `inputs["x"]`, return its outputs as `pred`."""
    root = Path(os.getcwd())
    plan = job["plan"]
    device = job.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        device = "cpu"
    info: dict[str, Any] = {"device": device}
    timings: dict[str, float] = {}
    imports = _Imports(root, plan.get("py_files", []))
    t = time.perf_counter()
    weights_rel = plan.get("weights")
    manifest_model = plan.get("model")
    model: nn.Module | None = None
    if manifest_model:
        model, found = _build_from_manifest(imports, manifest_model)
        info["model"] = found
    if weights_rel:
        progress(what="load", file=weights_rel)
        fmt, obj = _load_weights(root / weights_rel, imports, device)
        info["weights"] = {"file": weights_rel, "format": fmt}
        if fmt == "module":
            model = obj
            info.setdefault("model", {"class": type(obj).__name__, "whole_pickled_model": True})
        else:
            sd, stripped = _strip_prefix(obj)
            info["weights"]["stripped_module_prefix"] = stripped
            if model is None:
                model, found = _find_model(imports, sd, weights_rel)
                info["model"] = found
            diff = _compare(model, sd)
            if diff is not None:
                raise _err(
                    "load_failed",
                    f"The weights in {weights_rel} do not fit {type(model).__name__}: {diff}.",
                    f"{weights_rel} 中的权重与 {type(model).__name__} 不匹配：{diff}。",
                )
            model.load_state_dict(sd, strict=False)
    if model is None:
        raise _err(
            "no_model_found",
            "No weights file and no model were found.",
            "没有找到权重文件或模型。",
        )
    timings["load_s"] = time.perf_counter() - t
    model.eval()
    with contextlib.suppress(Exception):
        model.to(device)

    t = time.perf_counter()
    progress(what="preprocess")
    x = _preprocess(inputs["x"], job, imports, root, info)
    timings["preprocess_s"] = time.perf_counter() - t
    progress(what="forward")

    t = time.perf_counter()
    batch = int(job.get("batch_size", 1000))
    try:
        pred, batch = _infer_in_memory(model, x, device, batch, job, imports, root, info)
    except HarnessError:  # type: ignore[misc]
        raise
    except RuntimeError as e:
        flat_in = _first_linear_in(model)
        if x.ndim > 2 and flat_in == int(np.prod(x.shape[1:])):
            # The failed forward() may have changed the inputs in place before it raised: start
            # again from the job's file, preprocessed again.
            x = _preprocess(_fresh_input(job["inputs"]["x"]), job, imports, root, info)
            pred = _infer(model, x.reshape(len(x), -1), device, batch)
            info["flattened_input"] = True
        else:
            raise _err(
                "bad_output",
                f"Running your model on the test inputs of shape {tuple(x.shape)} failed: {e}",
                f"在形状为 {tuple(x.shape)} 的测试输入上运行模型失败：{e}",
            ) from None
    timings["inference_s"] = time.perf_counter() - t
    info["timings"] = timings
    return {"pred": pred}, info


# The grader's batches shrink by this factor while a forward() runs out of memory, down to SMALLEST_BATCH.
BATCH_SHRINK = 8
SMALLEST_BATCH = 16


def _out_of_memory(e: BaseException) -> bool:
    """torch's allocator failing: on the CPU (main.py's test), or CUDA's own out-of-memory."""
    return allocation_failed(e) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def _infer_in_memory(
    model: nn.Module,
    x: np.ndarray,
    device: str,
    batch: int,
    job: dict[str, Any],
    imports: _Imports,
    root: Path,
    info: dict[str, Any],
) -> tuple[np.ndarray, int]:
    """_infer, in smaller batches while a forward() runs out of memory; -> (outputs, the batch used).

    The grader's first batch is the whole MNIST test set (its fastest run for an MLP), but a CNN's
    activations on 10,000 images take gigabytes: a student evaluates in batches, and so do we."""
    while True:
        try:
            return _infer(model, x, device, batch), batch
        except (RuntimeError, MemoryError) as e:
            if not _out_of_memory(e):
                raise
            if batch <= SMALLEST_BATCH:
                mb = job.get("limits", {}).get("memory_mb")
                limit_en, limit_zh = (f" (limit {mb} MB)" if mb else ""), (f"（{mb} MB）" if mb else "")
                raise _err(
                    "memory_limit",
                    f"Your model ran out of memory{limit_en} on the test inputs, even in batches of {batch} "
                    f"samples: its forward() needs too much memory per sample. Make the layers or feature "
                    f"maps smaller, and keep no tensors across calls. ({type(e).__name__}: {str(e)[:200]})",
                    f"即使每批只有 {batch} 个样本，你的模型在测试输入上仍超出了内存限制{limit_zh}：forward() 每个"
                    f"样本需要的内存太多。请减小网络层或特征图的大小，不要在调用之间保留张量。"
                    f"（{type(e).__name__}: {str(e)[:200]}）",
                ) from None
        batch = max(SMALLEST_BATCH, batch // BATCH_SHRINK)
        info["batch_size"] = batch
        if device == "cuda":
            torch.cuda.empty_cache()
        # The failed forward() may have changed the inputs in place: start again from the job's file.
        x = _preprocess(_fresh_input(job["inputs"]["x"]), job, imports, root, info)


def _fresh_input(path: str) -> np.ndarray:
    """The job's input file again, mapped copy-on-write (writes stay private to this process)."""
    return np.load(path, mmap_mode="c", allow_pickle=False)


def _first_linear_in(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return int(m.in_features)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return None
    return None
