from __future__ import annotations

from service.report_text import format_result


def test_format_result_shows_failures_hints_and_both_languages() -> None:
    text = format_result(
        {
            "score": 0.5,
            "passed": False,
            "error": None,
            "checks": [
                {
                    "name": "relu_grad(0)",
                    "passed": False,
                    "message": "must be 0",
                    "message_zh": "应为 0",
                    "expected": 0.0,
                    "got": 1.0,
                },
                {"name": "sigmoid", "passed": True},
            ],
            "hints": [{"en": "left derivative", "zh": "左导数"}],
            "metrics": {"accuracy": 0.123456, "confusion_matrix": [[1, 2], [3, 4]]},
            "logs_tail": "epoch 1\nepoch 2\n",
        },
        title="Submission #1",
    )
    assert "Score 得分: 0.5000" in text and "NOT PASSED" in text
    assert "[FAIL] relu_grad(0): must be 0" in text and "应为 0" in text and "got: 1.0" in text
    assert "1/2 passed" in text and "左导数" in text
    assert "accuracy=0.1235" in text and "confusion_matrix" not in text
    assert "| epoch 2" in text


def test_format_result_error() -> None:
    text = format_result(
        {
            "score": 0.0,
            "passed": False,
            "error": {"code": "not_a_zip", "message": "re-pack", "message_zh": "重新打包"},
        }
    )
    assert "[not_a_zip]: re-pack" in text and "重新打包" in text
