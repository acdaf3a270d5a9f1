"""The report's page: one self-contained HTML file (plots embedded), readable in a browser and
in MLflow's artifact viewer."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from harness.report.plots import TITLES

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 13px; }
img { max-width: 100%; border: 1px solid #ddd; }
.missing { color: #8a6d3b; }
"""


def render(
    title: str,
    facts: list[tuple[str, str]],
    notes: list[str],
    table: str,
    plots: dict[str, Path],
    missing: dict[str, str],
    pareto: list[str],
) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<table>",
    ]
    parts += [
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in facts
    ]
    parts.append("</table>")
    if notes:
        parts.append("<h2>What is missing</h2><ul>")
        parts += [f"<li class='missing'>{html.escape(n)}</li>" for n in notes]
        parts.append("</ul>")
    parts += ["<h2>Trials</h2>", f"<pre>{html.escape(table)}</pre>"]
    if pareto:
        parts += ["<h2>Pareto front</h2><ul>"]
        parts += [f"<li>{html.escape(p)}</li>" for p in pareto]
        parts.append("</ul>")
    parts.append("<h2>Plots</h2>")
    for name, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        parts += [
            f"<h3>{html.escape(TITLES.get(name, name))}</h3>",
            f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>",
            f"<p><small>{html.escape(path.name)}</small></p>",
        ]
    for name, why in missing.items():
        parts += [
            f"<h3>{html.escape(TITLES.get(name, name))}</h3>",
            f"<p class='missing'>Not drawn: {html.escape(why)}</p>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
