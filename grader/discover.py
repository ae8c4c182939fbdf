"""What to run for a model submission: the `homework.toml` manifest, or the conventions of HOMEWORK.md.

Runs in the trusted process and only looks at file names and the TOML text; anything that needs
importing or unpickling a student file (which class matches the weights, constructor arguments) is
decided by the in-sandbox harness from the plan built here.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from grader.report import ErrorCode, GradeError

WEIGHT_EXTS = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
TRANSFORMER_EXTS = (".pkl", ".pickle", ".joblib")
MANIFEST = "homework.toml"

EXAMPLE_MANIFEST = """[model]
file = "model.py"
name = "PhonePriceModel"
kwargs = { input_dim = 20, output_dim = 4 }
weights = "model/phone-price-model.bin\""""


def _bad(en: str, zh: str) -> GradeError:
    return GradeError(ErrorCode.bad_manifest, en, zh)


def _rel(root: Path, files: set[str], value: Any, key: str, exts: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(
            f"homework.toml: `{key}` must be a file path string.",
            f"homework.toml：`{key}` 必须是文件路径字符串。",
        )
    rel = str(PurePosixPath(value.replace("\\", "/")))
    if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
        raise _bad(
            f"homework.toml: `{key}` = {value!r} must be a path inside the zip, relative to homework.toml.",
            f"homework.toml：`{key}` = {value!r} 必须是压缩包内、相对于 homework.toml 的路径。",
        )
    if rel not in files:
        close = [f for f in sorted(files) if PurePosixPath(f).name == PurePosixPath(rel).name]
        hint_en = f" Did you mean {close[0]!r}?" if close else ""
        hint_zh = f" 是不是 {close[0]!r}？" if close else ""
        raise _bad(
            f"homework.toml: `{key}` = {value!r}, but the zip has no such file.{hint_en}",
            f"homework.toml：`{key}` = {value!r}，但压缩包里没有这个文件。{hint_zh}",
        )
    if exts and not rel.lower().endswith(exts):
        raise _bad(
            f"homework.toml: `{key}` = {value!r} should end with one of {', '.join(exts)}.",
            f"homework.toml：`{key}` = {value!r} 的扩展名应为 {', '.join(exts)} 之一。",
        )
    return rel


def _from_manifest(root: Path, files: set[str], text: str, kind: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _bad(
            "homework.toml nests its tables or arrays too deeply to read. It needs only a [model] table, "
            f"as in the example in the homework handout:\n{EXAMPLE_MANIFEST}",
            f"homework.toml 的表或数组嵌套过深，无法读取。它只需要一个 [model] 表，请参照作业说明中的示例：\n{EXAMPLE_MANIFEST}",
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise _bad(
            f"homework.toml is not valid TOML: {e}. Compare with the example in the homework handout:\n"
            f"{EXAMPLE_MANIFEST}",
            f"homework.toml 不是合法的 TOML：{e}。请对照作业说明中的示例：\n{EXAMPLE_MANIFEST}",
        ) from None
    model = data.get("model")
    if not isinstance(model, dict):
        raise _bad(
            f"homework.toml needs a [model] table, for example:\n{EXAMPLE_MANIFEST}",
            f"homework.toml 需要一个 [model] 表，例如：\n{EXAMPLE_MANIFEST}",
        )
    unknown = set(model) - {"file", "name", "kwargs", "weights"}
    if unknown:
        raise _bad(
            f"homework.toml: unknown key(s) in [model]: {', '.join(sorted(unknown))}.",
            f"homework.toml：[model] 中有未知的键：{', '.join(sorted(unknown))}。",
        )
    plan: dict[str, Any] = {"source": "manifest", "model": None, "weights": None, "notes": []}
    if "weights" in model:
        plan["weights"] = _rel(root, files, model["weights"], "model.weights", WEIGHT_EXTS)
    if "file" in model or "name" in model:
        if "file" not in model or "name" not in model:
            if not ("file" in model and plan["weights"]):
                raise _bad(
                    "homework.toml: [model] needs both `file` and `name` (or only `weights` for a whole "
                    "pickled model).",
                    "homework.toml：[model] 需要同时给出 `file` 和 `name`（整个模型用 torch.save(model) 保存时可以只给 `weights`）。",
                )
        kwargs = model.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise _bad(
                "homework.toml: `kwargs` must be a table like { input_dim = 20 }.",
                "homework.toml：`kwargs` 必须是形如 { input_dim = 20 } 的表。",
            )
        plan["model"] = {
            "file": _rel(root, files, model["file"], "model.file", (".py",)),
            "name": _python_name(model.get("name"), "model", "PhonePriceModel"),
            "kwargs": kwargs,
        }
    if plan["model"] is None and plan["weights"] is None:
        raise _bad(
            f"homework.toml: [model] must give `weights`, or `file` and `name`. Example:\n{EXAMPLE_MANIFEST}",
            f"homework.toml：[model] 至少要给出 `weights`，或 `file` 与 `name`。示例：\n{EXAMPLE_MANIFEST}",
        )
    pre = data.get("preprocess", {})
    if not isinstance(pre, dict):
        raise _bad(
            "homework.toml: [preprocess] must be a table.", "homework.toml：[preprocess] 必须是一个表。"
        )
    unknown = set(pre) - {"file", "name", "transformer", "normalize"}
    if unknown:
        raise _bad(
            f"homework.toml: unknown key(s) in [preprocess]: {', '.join(sorted(unknown))}.",
            f"homework.toml：[preprocess] 中有未知的键：{', '.join(sorted(unknown))}。",
        )
    if "transformer" in pre:
        plan["transformer"] = _rel(
            root, files, pre["transformer"], "preprocess.transformer", TRANSFORMER_EXTS
        )
    if "normalize" in pre:
        norm = pre["normalize"]
        ok = (
            isinstance(norm, list)
            and len(norm) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in norm)
            and norm[1] != 0
        )
        if not ok:
            raise _bad(
                "homework.toml: `normalize` must be [mean, std] with std != 0, e.g. [0.1307, 0.3081].",
                "homework.toml：`normalize` 必须是 [均值, 标准差]，且标准差不为 0，例如 [0.1307, 0.3081]。",
            )
        plan["normalize"] = [float(norm[0]), float(norm[1])]
    if "name" in pre:
        pre_file = pre.get("file") or (plan["model"] or {}).get("file")
        if not pre_file:
            raise _bad(
                "homework.toml: [preprocess] `name` needs a `file`.",
                "homework.toml：[preprocess] 的 `name` 需要配合 `file`。",
            )
        plan["preprocess"] = {
            "file": _rel(root, files, pre_file, "preprocess.file", (".py",)),
            "name": _python_name(pre["name"], "preprocess", "preprocess"),
        }
    return plan


def _python_name(value: Any, table: str, example: str) -> str | None:
    """[model]/[preprocess] `name`: a class or function name in quotes (None: not given)."""
    if value is None or (isinstance(value, str) and value.isidentifier()):
        return value
    raise _bad(
        f"homework.toml: [{table}] `name` must be the name of a class or function in your file, in quotes, "
        f'e.g. name = "{example}" (it is {value!r}).',
        f'homework.toml：[{table}] 的 `name` 必须是你文件中某个类或函数的名字，并加上引号，例如 name = "{example}"'
        f"（现在是 {value!r}）。",
    )


def _manifest_text(path: Path) -> str:
    """homework.toml's text: UTF-8 (with or without a BOM), as TOML asks, or else GBK/GB18030, which a
    Chinese Windows editor saves by default (zip names are read the same way)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        utf8_error = e
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise _bad(
            f"homework.toml is not text the grader can read (byte {utf8_error.start} is not UTF-8). Save it "
            "as UTF-8 (Notepad: Save as > Encoding: UTF-8; VS Code: the encoding in the status bar) and zip again.",
            f"homework.toml 不是评测能读取的文本（第 {utf8_error.start} 个字节不是 UTF-8）。请把它另存为 UTF-8 编码"
            "（记事本：另存为 > 编码：UTF-8；VS Code：状态栏中的编码），然后重新打包。",
        ) from None


def _model_first(rel: str) -> tuple[int, str]:
    name = PurePosixPath(rel).name.lower()
    return (0 if "model" in name or "net" in name else 1, rel)


# Folders whose files are never a submission's code, weights or scaler unless homework.toml names them
# (as the function assignments skip them too): environments and packages. Intake already dropped
# __MACOSX and __pycache__.
TOOL_DIRS = {"node_modules", "venv", "site-packages"}


def _in_tool_dir(rel: str) -> bool:
    """Under a dot-folder (Jupyter's .ipynb_checkpoints with its stale *-checkpoint.py copies, .git,
    .idea, .venv) or one of TOOL_DIRS."""
    return any(p.startswith(".") or p in TOOL_DIRS for p in PurePosixPath(rel).parts[:-1])


# Pickles beside a phone-price model that the harness tries as its scaler (no manifest naming one).
MAX_TRANSFORMER_CANDIDATES = 8


def plan_model(root: Path, files: list[str], kind: str) -> dict[str, Any]:
    """Build the harness plan for a model submission; raises GradeError for what the student must fix."""
    file_set = set(files)
    files = [f for f in files if not _in_tool_dir(f)]
    py_files = sorted((f for f in files if f.endswith(".py")), key=_model_first)
    if MANIFEST in file_set:
        plan = _from_manifest(root, file_set, _manifest_text(root / MANIFEST), kind)
    else:
        plan = {"source": "conventions", "model": None, "notes": []}
        weights = sorted(f for f in files if f.lower().endswith(WEIGHT_EXTS))
        if not weights:
            raise GradeError(
                ErrorCode.no_model_found,
                "No weights file (.pt .pth .bin .ckpt .safetensors) in the zip. Save your trained model with "
                "torch.save(model.state_dict(), 'model.pth') and put that file in the zip with your model code.",
                "压缩包里没有权重文件（.pt .pth .bin .ckpt .safetensors）。请用 "
                "torch.save(model.state_dict(), 'model.pth') 保存训练好的模型，并与模型代码一起打包。",
            )
        if len(weights) > 1:
            # Naming the weights is enough: the harness then finds the class that matches them, as
            # without a manifest (any class or arguments shown here would be guesses).
            example = f'[model]\nweights = "{weights[0]}"'
            raise GradeError(
                ErrorCode.ambiguous_model,
                f"The zip has {len(weights)} weights files ({', '.join(weights)}); the grader needs exactly one. "
                f"Remove the others, or say which to use in a homework.toml at the top of the zip (the grader "
                f"then finds the class in your .py files that matches those weights):\n{example}",
                f"压缩包里有 {len(weights)} 个权重文件（{', '.join(weights)}），评测只需要一个。请删除其余文件，"
                f"或在压缩包根目录的 homework.toml 中指明使用哪一个（评测会在你的 .py 文件中找到与这些权重匹配的类）："
                f"\n{example}",
            )
        plan["weights"] = weights[0]
        if not py_files and not weights[0].endswith(".safetensors"):
            plan["notes"].append("no .py files: only a whole pickled model can work")
        pickles = sorted(f for f in files if f.lower().endswith(TRANSFORMER_EXTS))
        if kind == "phone-price" and len(pickles) == 1:
            # A lone scaler next to the model is almost certainly meant to be used; the harness applies
            # it only if it really is a transformer for these features.
            plan["transformer_auto"] = pickles[0]
        elif kind == "phone-price" and 1 < len(pickles) <= MAX_TRANSFORMER_CANDIDATES:
            # scaler.pkl beside history.pkl, say: the harness applies the one pickle that transforms
            # these features (it used to apply none, and the hint said no scaler was shipped).
            plan["transformer_candidates"] = pickles
    if not py_files and plan.get("model"):
        raise _bad(
            "homework.toml names a .py file, but the zip has none.",
            "homework.toml 指定了 .py 文件，但压缩包里没有。",
        )
    named = [(plan.get(part) or {}).get("file") for part in ("model", "preprocess")]
    plan["py_files"] = py_files + sorted({f for f in named if f and f not in py_files})
    return plan
