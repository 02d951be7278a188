"""Small HTML builders for the self-contained report: escaped text, tables, and PNG plots
embedded as base64 ``data:`` URIs (the page needs no network and no other file)."""

from __future__ import annotations

import base64
import html
from typing import Any

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 16px 28px; color: #222; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px;
       margin-top: 34px; } h3 { margin-bottom: 6px; }
.meta { color: #666; font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { display: block; max-width: 100%; margin: 8px 0 16px; border: 1px solid #eee; }
.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: 6px 10px; font-size: 14px; }
pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; color: #555; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Numbers to 4 significant decimals, None to a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def img(data: bytes, alt: str, ident: str) -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img class="plot" id="{esc(ident)}" alt="{esc(alt)}" src="{src}">'


def row(items: list[str]) -> str:
    """Side by side, wrapping on narrow screens."""
    return '<div class="row">' + "".join(items) + "</div>"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def page(title: str, meta: str, sections: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="meta">{esc(meta)}</p>'
        + "\n".join(sections)
        + "</body></html>\n"
    )
