"""Plain-text rendering of a grading result for terminals (`hwgrade check` and `hwgrade submit`).

Takes the JSON shape shared by GradeReport and the API's ResultRead: score, passed, error,
checks, hints, metrics, logs_tail.
"""

from __future__ import annotations

import json
from typing import Any

MAX_VALUE_CHARS = 160


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int | str | bool) or value is None:
        return str(value)
    return _short(value)


def format_result(result: dict[str, Any], *, title: str = "", show_logs: bool = True) -> str:
    lines: list[str] = []
    if title:
        lines.append(title)
    error = result.get("error")
    score = float(result.get("score") or 0.0)
    verdict = "PASSED 通过" if result.get("passed") else "NOT PASSED 未通过"
    lines.append(f"Score 得分: {score:.4f}   {verdict}")
    if error:
        lines.append(f"Error 错误 [{error.get('code')}]: {error.get('message', '')}")
        if error.get("message_zh"):
            lines.append(f"    {error['message_zh']}")
    checks: list[dict[str, Any]] = result.get("checks") or []
    if checks:
        n_ok = sum(1 for c in checks if c.get("passed"))
        lines.append(f"Checks 检查项: {n_ok}/{len(checks)} passed")
        for check in checks:
            mark = "ok  " if check.get("passed") else "FAIL"
            line = f"  [{mark}] {check.get('name')}"
            if not check.get("passed") and check.get("message"):
                line += f": {check['message']}"
            lines.append(line)
            if not check.get("passed"):
                if check.get("message_zh"):
                    lines.append(f"         {check['message_zh']}")
                for key in ("input", "expected", "got"):
                    if check.get(key) is not None:
                        lines.append(f"         {key}: {_short(check[key])}")
    hints: list[dict[str, Any]] = result.get("hints") or []
    if hints:
        lines.append("Hints 提示:")
        for hint in hints:
            lines.append(f"  - {hint.get('en', '')}")
            if hint.get("zh"):
                lines.append(f"    {hint['zh']}")
    metrics: dict[str, Any] = result.get("metrics") or {}
    scalar = {k: v for k, v in metrics.items() if not isinstance(v, list | dict)}
    if scalar:
        lines.append("Metrics 指标: " + ", ".join(f"{k}={_metric(v)}" for k, v in scalar.items()))
    logs = (result.get("logs_tail") or "").strip()
    if show_logs and logs:
        tail = "\n".join(logs.splitlines()[-20:])
        lines.append("Output of your code (last lines) 程序输出（末尾）:")
        lines.extend("  | " + line for line in tail.splitlines())
    return "\n".join(lines)
