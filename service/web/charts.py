"""Server-side SVG charts: plain string building, no plotting library, no JavaScript.

Every chart scales to its container (viewBox + width 100%) and escapes every piece of text it draws;
labels may come from students (assignment titles do not, but file and display names could).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'PingFang SC', sans-serif\""
PASS_COLOR = "#c0392b"
BAR_PASS = "#2e8b57"
BAR_FAIL = "#9aa5b1"
AXIS = "#52606d"
GRID = "#e4e7eb"
SERIES_COLORS = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626"]


def _t(value: object) -> str:
    return escape(str(value), quote=True)


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, body: list[str], label: str, max_width: int | None = None) -> Markup:
    # A small viewBox drawn larger on wide screens keeps the text readable on a phone as well.
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{max_width or width}px;height:auto" role="img" aria-label="{_t(label)}" {FONT}>'
        f"<title>{_t(label)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def histogram(
    scores: Sequence[float],
    pass_line: float,
    *,
    bins: int = 10,
    width: int = 440,
    height: int = 230,
    label: str = "Score histogram 分数分布",
) -> Markup:
    """Counts of scores in [0, 1] in `bins` equal bins, bars green at or above the pass line, and the line."""
    left, right, top, bottom = 40, 16, 36, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    counts = [0] * bins
    for s in scores:
        if not isinstance(s, int | float) or math.isnan(s):
            continue
        counts[min(bins - 1, max(0, int(float(s) * bins)))] += 1
    peak = max(counts) if any(counts) else 1
    step = max(1, math.ceil(peak / 4))
    y_max = step * math.ceil(peak / step)
    body: list[str] = []
    for k in range(0, y_max + 1, step):
        y = top + plot_h - plot_h * k / y_max
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" y2="{_num(y)}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{_num(y + 4)}" font-size="11" text-anchor="end" fill="{AXIS}">{k}</text>'
        )
    bar_w = plot_w / bins
    for i, count in enumerate(counts):
        x = left + i * bar_w
        lower = i / bins
        color = BAR_PASS if lower >= pass_line - 1e-9 else BAR_FAIL
        h = plot_h * count / y_max
        y = top + plot_h - h
        if count:
            body.append(
                f'<rect x="{_num(x + 1)}" y="{_num(y)}" width="{_num(bar_w - 2)}" height="{_num(h)}" '
                f'fill="{color}"><title>{lower:.1f}–{lower + 1 / bins:.1f}: {count}</title></rect>'
            )
            body.append(
                f'<text x="{_num(x + bar_w / 2)}" y="{_num(y - 4)}" font-size="11" text-anchor="middle" '
                f'fill="#1f2933">{count}</text>'
            )
    for i in range(0, bins + 1, max(1, bins // 5)):
        x = left + i * bar_w
        body.append(
            f'<text x="{_num(x)}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle" '
            f'fill="{AXIS}">{i / bins:.1f}</text>'
        )
    body.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{AXIS}"/>'
    )
    body.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="12" text-anchor="middle" '
        f'fill="{AXIS}">score 分数 (n={sum(counts)})</text>'
    )
    px = left + plot_w * min(1.0, max(0.0, pass_line))
    body.append(
        f'<line x1="{_num(px)}" x2="{_num(px)}" y1="18" y2="{top + plot_h}" stroke="{PASS_COLOR}" '
        'stroke-width="2" stroke-dasharray="6 4"/>'
    )
    anchor = "end" if pass_line > 0.75 else "start"
    dx = -4 if anchor == "end" else 4
    body.append(
        f'<text x="{_num(px + dx)}" y="14" font-size="12" text-anchor="{anchor}" fill="{PASS_COLOR}" '
        f'font-weight="600">pass 及格线 {pass_line:.4g}</text>'
    )
    return _svg(width, height, body, label, max_width=660)


def _is_matrix(cm: object) -> bool:
    if not isinstance(cm, list) or not cm or len(cm) > 50:
        return False
    n = len(cm)
    return all(
        isinstance(row, list) and len(row) == n and all(isinstance(v, int | float) for v in row) for row in cm
    )


def confusion_matrix(
    cm: object,
    *,
    labels: Sequence[str] | None = None,
    label: str = "Confusion matrix 混淆矩阵",
) -> Markup:
    """A heatmap of `cm[true][predicted]` with the count in each cell, shaded by the row's share.

    Returns empty markup when `cm` is not a square matrix of numbers (a report from an older grader).
    """
    if not _is_matrix(cm):
        return Markup("")
    assert isinstance(cm, list)
    n = len(cm)
    names = (
        [str(x) for x in labels] if labels is not None and len(labels) == n else [str(i) for i in range(n)]
    )
    cell = max(28, min(56, 420 // n))
    left, top = 64, 56
    width, height = left + n * cell + 16, top + n * cell + 16
    body: list[str] = [
        f'<text x="{left + n * cell / 2}" y="16" font-size="12" text-anchor="middle" fill="{AXIS}">'
        "predicted 预测</text>",
        f'<text x="14" y="{top + n * cell / 2}" font-size="12" text-anchor="middle" fill="{AXIS}" '
        f'transform="rotate(-90 14 {top + n * cell / 2})">true 真实</text>',
    ]
    font = 12 if cell >= 40 else 10
    for j in range(n):
        body.append(
            f'<text x="{left + j * cell + cell / 2}" y="{top - 8}" font-size="11" text-anchor="middle" '
            f'fill="{AXIS}">{_t(names[j])}</text>'
        )
    for i, row in enumerate(cm):
        total = sum(row) or 1
        body.append(
            f'<text x="{left - 8}" y="{top + i * cell + cell / 2 + 4}" font-size="11" text-anchor="end" '
            f'fill="{AXIS}">{_t(names[i])}</text>'
        )
        for j, value in enumerate(row):
            share = value / total
            # Diagonal in blue, mistakes in red; the darker, the larger the share of the true class.
            hue = "37,99,235" if i == j else "220,38,38"
            alpha = 0.06 + 0.9 * share if value else 0.0
            text_color = "#ffffff" if alpha > 0.55 else "#1f2933"
            x, y = left + j * cell, top + i * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgba({hue},{alpha:.3f})" '
                f'stroke="#ffffff"><title>true {_t(names[i])}, predicted {_t(names[j])}: {_t(value)}</title></rect>'
            )
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            body.append(
                f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" font-size="{font}" text-anchor="middle" '
                f'fill="{text_color}">{_t(shown)}</text>'
            )
    body.append(
        f'<rect x="{left}" y="{top}" width="{n * cell}" height="{n * cell}" fill="none" stroke="{AXIS}"/>'
    )
    return _svg(width, height, body, label)


@dataclass(frozen=True)
class Point:
    at: datetime
    score: float
    passed: bool
    title: str = ""


def score_timeline(
    series: Mapping[str, Sequence[Point]],
    *,
    pass_lines: Mapping[str, float] | None = None,
    width: int = 440,
    height: int = 220,
    label: str = "Score over time 分数变化",
) -> Markup:
    """One line per series (an assignment) of scores in [0, 1] over time; filled dots passed, hollow not."""
    points = [p for ps in series.values() for p in ps]
    if not points:
        return Markup("")
    left, right, top, bottom = 40, 16, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    t0 = min(p.at for p in points).timestamp()
    t1 = max(p.at for p in points).timestamp()
    span = (t1 - t0) or 1.0

    def xy(p: Point) -> tuple[float, float]:
        x = left + (plot_w * (p.at.timestamp() - t0) / span if t1 > t0 else plot_w / 2)
        return x, top + plot_h * (1 - min(1.0, max(0.0, p.score)))

    body: list[str] = []
    for k in range(0, 5):
        v = k / 4
        y = top + plot_h * (1 - v)
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" y2="{_num(y)}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{_num(y + 4)}" font-size="12" text-anchor="end" fill="{AXIS}">{v:g}</text>'
        )
    legend_x = left
    for n, (name, ps) in enumerate(series.items()):
        color = SERIES_COLORS[n % len(SERIES_COLORS)]
        ordered = sorted(ps, key=lambda p: p.at)
        threshold = (pass_lines or {}).get(name)
        if threshold is not None:
            y = top + plot_h * (1 - threshold)
            body.append(
                f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" y2="{_num(y)}" stroke="{color}" '
                'stroke-opacity="0.5" stroke-dasharray="4 4"/>'
            )
        if len(ordered) > 1:
            path = " ".join(f"{_num(x)},{_num(y)}" for x, y in map(xy, ordered))
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in ordered:
            x, y = xy(p)
            fill = color if p.passed else "#ffffff"
            tip = p.title or f"{p.score:.4f}"
            body.append(
                f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4" fill="{fill}" stroke="{color}" stroke-width="2">'
                f"<title>{_t(tip)}</title></circle>"
            )
        body.append(f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" fill="{color}"/>')
        body.append(
            f'<text x="{legend_x + 14}" y="{height - 7}" font-size="12" fill="#1f2933">{_t(name)}</text>'
        )
        legend_x += 24 + 8 * len(name)
    body.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{AXIS}"/>'
    )
    first = min(p.at for p in points)
    last = max(p.at for p in points)
    body.append(
        f'<text x="{left}" y="{top + plot_h + 15}" font-size="12" fill="{AXIS}">{_t(first.strftime("%m-%d %H:%M"))}</text>'
    )
    if t1 > t0:
        body.append(
            f'<text x="{left + plot_w}" y="{top + plot_h + 15}" font-size="12" text-anchor="end" '
            f'fill="{AXIS}">{_t(last.strftime("%m-%d %H:%M"))}</text>'
        )
    return _svg(width, height, body, label, max_width=660)
