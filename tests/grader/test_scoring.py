"""Model scoring, outside the sandbox, against scikit-learn's metrics and the plain definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from grader.assignments import BUILTIN_ASSIGNMENTS
from grader.evaluators.base import HarnessOutput, Prepared
from grader.evaluators.models import EVALUATOR, public_mask

SHA = "0123456789abcdef" * 4


def score(slug: str, y: np.ndarray, pred: np.ndarray) -> dict:
    prepared = Prepared(job={}, inputs={}, state={"y": y, "sha256": SHA})
    scored = EVALUATOR.score(
        BUILTIN_ASSIGNMENTS[slug], prepared, HarnessOutput(result={}, arrays={"pred": pred})
    )
    return {"score": scored.score, "passed": scored.passed, **scored.metrics, "hints": scored.hints}


@pytest.mark.parametrize(("slug", "k", "n"), [("mnist", 10, 1000), ("phone-price", 4, 401), ("mnist", 10, 1)])
@pytest.mark.parametrize("form", ["scores", "indices"])
def test_metrics_match_scikit_learn_and_the_public_private_split(
    slug: str, k: int, n: int, form: str
) -> None:
    rng = np.random.default_rng(n + k)
    y = rng.integers(0, k, n)
    scores = rng.standard_normal((n, k)).astype(np.float32)
    scores[rng.random(n) < 0.7, :] = 0.0
    scores[np.arange(n), y] += rng.random(n) < 0.7  # ~70% right, many ties (the first maximum wins)
    labels = scores.argmax(axis=1)
    m = score(slug, y, scores if form == "scores" else labels.astype(np.float64))
    assert m["output_form"] == form
    assert m["confusion_matrix"] == confusion_matrix(y, labels, labels=list(range(k))).tolist()
    assert m["accuracy"] == pytest.approx(float((labels == y).mean()))
    assert m["correct"] == int((labels == y).sum()) and m["n"] == n
    expected_f1 = f1_score(y, labels, labels=list(range(k)), average="macro", zero_division=0)
    assert m["macro_f1"] == pytest.approx(expected_f1)
    mask = public_mask(n, SHA)
    assert mask.sum() == n // 2
    acc = (labels == y).mean()
    assert m["public_accuracy"] == pytest.approx((labels[mask] == y[mask]).mean() if mask.any() else acc)
    assert m["private_accuracy"] == pytest.approx(
        (labels[~mask] == y[~mask]).mean() if (~mask).any() else acc
    )


def test_the_public_half_is_fixed_per_hidden_set_and_cannot_be_changed() -> None:
    a, b = public_mask(10_000, SHA), public_mask(10_000, "f" * 64)
    assert a.sum() == b.sum() == 5_000 and (a != b).any()
    assert (public_mask(10_000, SHA) == a).all()
    with pytest.raises(ValueError):
        a[0] = not a[0]  # cached for the next grading: nobody may change it


def test_one_class_for_everything_gets_a_hint_and_two_classes_do_not() -> None:
    y = np.arange(100) % 10
    same = score("mnist", y, np.full(100, 3.0))
    assert same["accuracy"] == pytest.approx(0.1)
    assert any("class 3 for every test sample" in h.en for h in same["hints"])
    two = score("mnist", y, np.where(np.arange(100) < 99, 3.0, 4.0))
    assert not any("for every test sample" in h.en for h in two["hints"])
