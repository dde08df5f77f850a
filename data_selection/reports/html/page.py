"""One self-contained HTML file: the stylesheet and script of ``assets/`` inlined, the data as embedded JSON.

The page's content is a JSON payload::

    {"title": ..., "subtitle": ..., "sections": [{"title": ..., "blocks": [BLOCK, ...]}, ...],
     "links": [{"label": ..., "href": ...}], "browser": BROWSER or null}

``BLOCK`` is one of the kinds ``assets/report.js`` draws (:mod:`data_selection.reports.html.charts` builds
them); ``BROWSER`` is the per-example table (:mod:`data_selection.reports.html.browser`). Nothing is fetched
when the page opens: no CDN, no font, no image outside the file.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from data_selection.atomic import write_text_atomic

ASSETS = Path(__file__).parent / "assets"


def _clean(obj: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def embed_json(payload: dict[str, Any]) -> str:
    """JSON safe inside <script>: no ``</`` can close the element early."""
    text = json.dumps(_clean(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def build_page(payload: dict[str, Any]) -> str:
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    js = (ASSETS / "report.js").read_text(encoding="utf-8")
    title = html.escape(payload.get("title", "report"))
    subtitle = html.escape(payload.get("subtitle", ""))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{title}</title><style>{css}</style></head><body>"
        f"<header><h1>{title}</h1><p>{subtitle}</p></header><nav id=\"nav\"></nav>"
        "<main><div id=\"sections\"></div><section id=\"browser\"></section></main>"
        f"<script id=\"report-data\" type=\"application/json\">{embed_json(payload)}</script>"
        f"<script>{js}</script></body></html>\n"
    )


def write_page(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``path`` atomically; returns it."""
    path = Path(path)
    write_text_atomic(path, build_page(payload))
    return path
