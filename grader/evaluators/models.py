"""Model assignments (`phone-price`, `mnist`): accuracy on the hidden test set, scored outside the sandbox."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from grader import discover
from grader.assignments import AssignmentSpec
from grader.datasets import load_hidden
from grader.evaluators.base import HarnessOutput, Prepared, Scored, describe_stage
from grader.report import CheckResult, DatasetInfo, ErrorCode, GradeError, Message

N_CLASSES = {"phone-price": 4, "mnist": 10}

SCALER_FIX = """# in your training script, right after fitting the scaler:
import pickle
with open("scaler.pkl", "wb") as f:
    pickle.dump(transfer, f)          # transfer = the fitted StandardScaler

# homework.toml, at the top of the zip:
[model]
file = "model.py"
name = "PhonePriceModel"
kwargs = { input_dim = 20, output_dim = 4 }
weights = "model/phone-price-model.bin"

[preprocess]
transformer = "scaler.pkl\""""


@lru_cache(maxsize=8)
def public_mask(n: int, dataset_sha256: str) -> np.ndarray:
    """The fixed public half of a hidden set (Kaggle-style public/private split), from its hash.
    Made once per hidden set (0.13-0.44 ms each time it was rebuilt per grading); read-only."""
    rng = np.random.default_rng(int(dataset_sha256[:16], 16))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: n // 2]] = True
    mask.flags.writeable = False
    return mask


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """cm[true, predicted] = count; both in 0..k-1 (labels are checked by to_labels)."""
    return np.bincount(y.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)


def macro_f1(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(axis=0), out=np.zeros_like(tp), where=cm.sum(axis=0) > 0)
    recall = np.divide(tp, cm.sum(axis=1), out=np.zeros_like(tp), where=cm.sum(axis=1) > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def _bad(en: str, zh: str) -> GradeError:
    return GradeError(ErrorCode.bad_output, en, zh)


def to_labels(pred: np.ndarray | None, n: int, k: int) -> tuple[np.ndarray, str]:
    """Validate the model's outputs and turn them into class indices; -> (labels, "scores"|"indices")."""
    if pred is None:
        raise _bad("Your model produced no output.", "你的模型没有产生输出。")
    if pred.ndim == 2 and pred.shape[1] == 1 and k > 1:
        raise _bad(
            f"Your model returns one number per sample (shape {pred.shape}); it must return {k} scores per "
            f"sample (shape (n, {k})) or a class index per sample (shape (n,)).",
            f"你的模型对每个样本只返回一个数（形状 {pred.shape}）；应返回每个样本 {k} 个分数（形状 (n, {k})）"
            f"或类别下标（形状 (n,)）。",
        )
    if pred.ndim not in (1, 2) or pred.shape[0] != n:
        raise _bad(
            f"Your model returned shape {tuple(pred.shape)} for {n} test samples; expected ({n}, {k}) scores or "
            f"({n},) class indices.",
            f"{n} 个测试样本，你的模型返回的形状是 {tuple(pred.shape)}；应为 ({n}, {k}) 的分数或 ({n},) 的类别下标。",
        )
    if pred.dtype.kind == "f" and not np.isfinite(pred).all():
        rows = np.where(~np.isfinite(pred).reshape(n, -1).all(axis=1))[0]
        raise _bad(
            f"Your model's outputs contain NaN or infinity ({len(rows)} of {n} samples, e.g. row {int(rows[0])}). "
            f"Check the weights you saved and your preprocessing (division by zero?).",
            f"你的模型输出中含有 NaN 或无穷大（{n} 个样本中有 {len(rows)} 个，例如第 {int(rows[0])} 行）。"
            f"请检查保存的权重和预处理（是否除以了 0？）。",
        )
    if pred.ndim == 2:
        if pred.shape[1] != k:
            raise _bad(
                f"Your model returns {pred.shape[1]} scores per sample, but this assignment has {k} classes: "
                f"give its last layer {k} outputs (e.g. nn.Linear(..., {k})), retrain and save the weights again.",
                f"你的模型每个样本返回 {pred.shape[1]} 个分数，但本作业有 {k} 个类别：请把最后一层的输出改为 {k} 个"
                f"（例如 nn.Linear(..., {k})），重新训练并保存权重。",
            )
        return pred.argmax(axis=1).astype(np.int64), "scores"
    if pred.dtype.kind == "f" and not np.all(pred == np.round(pred)):
        raise _bad(
            f"Your model returns one fractional number per sample; return ({n}, {k}) scores or integer class indices.",
            f"你的模型对每个样本返回一个小数；请返回 ({n}, {k}) 的分数或整数类别下标。",
        )
    labels = pred.astype(np.int64)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        raise _bad(
            f"Your model returned class indices outside 0..{k - 1} (min {labels.min()}, max {labels.max()}).",
            f"你的模型返回的类别下标超出了 0..{k - 1}（最小 {labels.min()}，最大 {labels.max()}）。",
        )
    return labels, "indices"


def looks_double_softmaxed(pred: np.ndarray) -> bool:
    """softmax(p) of a probability vector p stays within [1/(e+k-1), e/(e+k-1)]: a tell-tale sign."""
    if pred.ndim != 2 or pred.dtype.kind != "f" or len(pred) == 0:
        return False
    k = pred.shape[1]
    if not (np.all(pred >= 0) and np.allclose(pred.sum(axis=1), 1.0, atol=1e-3)):
        return False
    return bool(pred.max() <= math.e / (math.e + k - 1) + 1e-4)


def inference_batch_size(x: np.ndarray) -> int:
    """Rows per forward() in the sandbox: batches of up to ~32 MB of input, so the whole MNIST test
    set goes in one batch, as a student would run it."""
    return max(1, (32 << 20) // max(1, x[0].nbytes if len(x) else 1))


ACCURACY_CHECK = "accuracy on the hidden test set"


class ModelEvaluator:
    uses_input_cache = True

    def where(self, prepared: Prepared, stage: dict[str, str] | None) -> Message | None:
        """Where the harness was when the run stopped without a result."""
        return describe_stage(stage)

    def prepare(self, spec: AssignmentSpec, submission_dir: Path, data_dir: Path | None) -> Prepared:
        hidden = load_hidden(spec.kind, data_dir)
        files = sorted(
            p.relative_to(submission_dir).as_posix() for p in submission_dir.rglob("*") if p.is_file()
        )
        plan = discover.plan_model(submission_dir, files, spec.kind)
        job = {
            "kind": "model",
            "task": spec.kind,
            "plan": plan,
            "columns": hidden.columns,
            "n_classes": N_CLASSES[spec.kind],
            "batch_size": inference_batch_size(hidden.x),
            "preimport": ["pandas", "sklearn.preprocessing", "joblib"] if spec.kind == "phone-price" else [],
        }
        return Prepared(
            job=job,
            inputs={"x": hidden.x},
            state={"y": hidden.y, "sha256": hidden.sha256, "plan": plan},
            dataset=DatasetInfo(name=hidden.name, sha256=hidden.sha256, n=int(len(hidden.y))),
            inputs_cache_key=f"{spec.kind}-{hidden.sha256[:32]}",
        )

    def score(self, spec: AssignmentSpec, prepared: Prepared, output: HarnessOutput) -> Scored:
        y: np.ndarray = prepared.state["y"]
        k = N_CLASSES[spec.kind]
        pred = output.arrays.get("pred")
        labels, form = to_labels(pred, len(y), k)
        assert pred is not None
        cm = confusion(y, labels, k)
        right = labels == y
        correct = int(np.count_nonzero(right))
        acc = correct / len(y) if len(y) else 0.0
        mask = public_mask(len(y), prepared.state["sha256"])
        n_pub = int(np.count_nonzero(mask))
        pub_correct = int(np.count_nonzero(right & mask))
        pub = pub_correct / n_pub if n_pub else acc
        n_priv = len(y) - n_pub
        priv = (correct - pub_correct) / n_priv if n_priv else acc
        info: dict[str, Any] = output.result.get("info", {}) if output.result else {}
        metrics: dict[str, Any] = {
            "accuracy": acc,
            "macro_f1": macro_f1(cm),
            "confusion_matrix": cm.tolist(),
            "public_accuracy": pub,
            "private_accuracy": priv,
            "n": int(len(y)),
            "correct": correct,
            "output_form": form,
        }
        passed, checks = self.verdict(spec, acc, metrics, [])
        return Scored(
            score=acc,
            passed=passed,
            metrics=metrics,
            checks=checks,
            hints=self.hints(spec, pred, labels, acc, k, info),
        )

    def verdict(
        self, spec: AssignmentSpec, score: float, metrics: dict[str, Any], checks: list[CheckResult]
    ) -> tuple[bool, list[CheckResult]]:
        """A model passes at an accuracy of the pass mark or more; its one check says so."""
        passed = score >= spec.pass_threshold - 1e-12
        correct, n = metrics.get("correct", "?"), metrics.get("n", "?")
        check = CheckResult(
            name=ACCURACY_CHECK,
            passed=passed,
            message=f"accuracy {score:.4f} ({correct}/{n}); the pass mark is {spec.pass_threshold:.4f}",
            message_zh=f"准确率 {score:.4f}（{correct}/{n}）；及格线为 {spec.pass_threshold:.4f}",
            expected=f">= {spec.pass_threshold}",
            got=score,
        )
        return passed, [check, *(c for c in checks if c.name != ACCURACY_CHECK)]

    def hints(
        self,
        spec: AssignmentSpec,
        pred: np.ndarray,
        labels: np.ndarray,
        acc: float,
        k: int,
        info: dict[str, Any],
    ) -> list[Message]:
        hints: list[Message] = []
        preprocessed = any(key in info for key in ("transformer", "normalize", "preprocess"))
        ambiguous = info.get("transformer_auto_ambiguous")
        if ambiguous:
            names = ", ".join(str(a) for a in ambiguous)
            hints.append(
                Message(
                    en=f"Several pickles in your zip could be your scaler ({names}), so the grader applied none. "
                    f"Name the one to use in homework.toml:\n{SCALER_FIX}",
                    zh=f"压缩包中有多个 pickle 文件都可能是标准化器（{names}），因此评测没有使用任何一个。"
                    f"请在 homework.toml 中指明使用哪一个：\n{SCALER_FIX}",
                )
            )
        elif spec.kind == "phone-price" and acc < 0.6 and not preprocessed:
            hints.append(
                Message(
                    en="Accuracy is near chance and no scaler was applied. The features reach the model raw "
                    "(ram is in the thousands, blue is 0/1): if you trained on standardized features "
                    "(StandardScaler in your data loading), ship the fitted scaler so the grader applies the "
                    f"same transform:\n{SCALER_FIX}",
                    zh="准确率接近随机猜测，且没有使用标准化器。评测时特征以原始数值输入模型（ram 为几千，blue 为 0/1）："
                    "如果训练时在数据加载中做了标准化（StandardScaler），请把拟合好的标准化器一起提交，"
                    f"让评测使用同样的变换：\n{SCALER_FIX}",
                )
            )
        if len(labels) > k and bool((labels == labels[0]).all()):
            hints.append(
                Message(
                    en=f"Your model predicts class {int(labels[0])} for every test sample; check that the "
                    "weights you saved are the trained ones and that the inputs are preprocessed as in training.",
                    zh=f"你的模型对所有测试样本都预测为类别 {int(labels[0])}；请确认保存的是训练后的权重，"
                    "并且输入的预处理与训练时一致。",
                )
            )
        if looks_double_softmaxed(pred):
            hints.append(
                Message(
                    en="Your outputs look like softmax applied twice (all probabilities squeezed near 1/k). "
                    "nn.CrossEntropyLoss already applies log-softmax: return raw logits from forward().",
                    zh="你的输出看起来被做了两次 softmax（概率都挤在 1/k 附近）。nn.CrossEntropyLoss 已包含 "
                    "log-softmax：forward() 直接返回 logits 即可。",
                )
            )
        if info.get("flattened_input"):
            hints.append(
                Message(
                    en="Your model expects flattened images, so the grader flattened the (n, 1, 28, 28) input for "
                    "you. Add x = x.view(x.size(0), -1) at the start of forward() to follow the contract.",
                    zh="你的模型需要展平的图像，评测已替你把 (n, 1, 28, 28) 的输入展平。请在 forward() 开头加上 "
                    "x = x.view(x.size(0), -1) 以符合作业约定。",
                )
            )
        if info.get("transformer_auto"):
            among = info.get("transformer_auto_among", 1)
            only_en = (
                "the only pickle in your zip"
                if among == 1
                else f"of the {among} pickles in your zip, the only scaler"
            )
            only_zh = (
                "压缩包中唯一的 pickle 文件"
                if among == 1
                else f"压缩包中 {among} 个 pickle 文件里唯一的标准化器"
            )
            hints.append(
                Message(
                    en=f"The grader applied {info['transformer']} ({only_en}) as your scaler. "
                    "Name it in homework.toml under [preprocess] transformer to make this explicit.",
                    zh=f"评测把 {info['transformer']}（{only_zh}）当作标准化器使用。"
                    "请在 homework.toml 的 [preprocess] transformer 中明确写出。",
                )
            )
        return hints


EVALUATOR = ModelEvaluator()
