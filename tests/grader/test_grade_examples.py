"""The course's example submissions graded end to end by grade(), on the embedded and the real data."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from grader import grade
from grader.assignments import get_assignment
from grader.report import GradeReport
from reference.examples import EXAMPLES_DIR, find_examples, zip_folder

pytestmark = pytest.mark.slow


def grade_example(name: str, tmp_path: Path, data_dir: Path | None = None) -> GradeReport:
    folder = EXAMPLES_DIR / name
    example = next(e for e in find_examples() if e.folder == folder)
    zip_path = tmp_path / f"{name}.zip"
    zip_path.write_bytes(zip_folder(folder))
    report = grade(zip_path, get_assignment(example.slug), data_dir=data_dir)
    assert report.status == "graded", report.error
    return report


def test_every_example_is_found() -> None:
    names = {e.name: e.slug for e in find_examples()}
    assert names == {
        "activations": "activations",
        "backprop": "backprop",
        "optimizers": "optimizers",
        "mnist-mlp": "mnist",
        "phone-price-baseline": "phone-price",
        "phone-price-tuned": "phone-price",
        "phone-price-tuned-noscaler": "phone-price",
    }


@pytest.mark.parametrize("name", ["activations", "backprop", "optimizers"])
def test_function_examples_pass_every_check(name: str, tmp_path: Path) -> None:
    report = grade_example(name, tmp_path)
    assert report.score == 1.0 and report.passed
    assert len(report.checks) >= 20 and all(c.passed for c in report.checks)


def test_model_examples_on_the_embedded_data(tmp_path: Path) -> None:
    baseline = grade_example("phone-price-baseline", tmp_path)
    tuned = grade_example("phone-price-tuned", tmp_path)
    noscaler = grade_example("phone-price-tuned-noscaler", tmp_path)
    mnist = grade_example("mnist-mlp", tmp_path)
    assert baseline.dataset is not None and baseline.dataset.name.startswith("embedded:")
    assert baseline.metrics["correct"] == 530 and baseline.metrics["n"] == 1000
    assert tuned.metrics["correct"] == 957
    assert noscaler.metrics["correct"] == 250
    assert any("scaler" in h.en for h in noscaler.hints)
    assert mnist.dataset is not None and mnist.dataset.n == 5000
    assert mnist.score >= 0.98


@pytest.mark.shared_data
def test_tuned_example_scores_exactly_the_courses_0_9625(tmp_path: Path, course_data_dir: Path) -> None:
    tuned = grade_example("phone-price-tuned", tmp_path, course_data_dir)
    assert tuned.metrics["correct"] == 385 and tuned.metrics["n"] == 400
    assert tuned.score == 0.9625 and tuned.passed
    assert tuned.dataset is not None and tuned.dataset.name == "phone-price/hidden.csv"


@pytest.mark.shared_data
def test_course_scripts_zipped_as_they_are_on_the_real_split(tmp_path: Path, course_data_dir: Path) -> None:
    baseline = grade_example("phone-price-baseline", tmp_path, course_data_dir)
    noscaler = grade_example("phone-price-tuned-noscaler", tmp_path, course_data_dir)
    assert baseline.metrics["correct"] == 208 and not baseline.passed
    assert noscaler.metrics["correct"] == 100 and not noscaler.passed
    hint = next(h for h in noscaler.hints if "scaler" in h.en)
    assert "[preprocess]" in hint.en and "transformer" in hint.zh


@pytest.mark.shared_data
def test_mnist_example_on_the_real_t10k(tmp_path: Path, course_data_dir: Path) -> None:
    mnist = grade_example("mnist-mlp", tmp_path, course_data_dir)
    assert mnist.dataset is not None and mnist.dataset.n == 10000
    assert mnist.score >= 0.97 and mnist.passed


def _zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


@pytest.mark.parametrize(
    ("slug", "files", "expected", "expected_zh"),
    [
        (
            "activations",
            {"activations.ipynb": NOTEBOOK},
            "Export your functions as activations.py",
            "导出为 activations.py",
        ),
        (
            "mnist",
            {
                "mnist.ipynb": NOTEBOOK,
                "mnist-mlp.pth": (EXAMPLES_DIR / "mnist-mlp" / "mnist-mlp.pth").read_bytes(),
            },
            "as model.py",
            "notebook",
        ),
        (
            "activations",
            {"hw1.zip": zip_folder(EXAMPLES_DIR / "activations")},
            "Your zip contains another zip (hw1.zip)",
            "另一个 zip（hw1.zip）",
        ),
    ],
    ids=["notebook-only functions", "notebook-only model", "zip in a zip"],
)
def test_a_zip_of_a_notebook_or_a_zip_says_what_to_upload_instead(
    slug: str, files: dict[str, bytes], expected: str, expected_zh: str, tmp_path: Path
) -> None:
    zip_path = tmp_path / "hw.zip"
    zip_path.write_bytes(_zip_of(files))
    report = grade(zip_path, get_assignment(slug))
    assert report.status == "error" and report.error is not None
    assert expected in report.error.message and expected_zh in report.error.message_zh
    assert report.error.message.count(next(iter(files))) == 1  # named once, not once per listing
