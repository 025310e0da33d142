"""The token-level view as one self-contained HTML file: inline CSS, script and data; no network.

The style (``page.css``) and the script (``page.js``, next to this module) are inlined; the data (see
:mod:`tdpo.token_view`) goes in a ``<script type="application/json">`` element, with every ``<`` written
as ``\\u003c`` so that no text in it can close the element. The script builds the page from the data
with ``textContent`` only (no HTML is ever parsed from the data). The file opens from ``file://``.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from tdpo.files import write_atomic

HELP = (
    "<p>Each response token is shaded by its log-ratio log π_θ(y_t) − log π_ref(y_t) under the column's "
    "policy π_θ and the reference π_ref (blue: the policy made the token more likely, red: less). Hover a "
    "token for its numbers, click to pin them (Esc or a click elsewhere lets go): both log-probs, the "
    "per-token forward KL(π_ref‖π_θ) = Σ_v π_ref(v) (log π_ref(v) − log π_θ(v)) at that position (the term "
    "TDPO constrains at every token) and both models' most likely tokens there.</p>"
    "<p>Per response: Δ = Σ_t [log π_θ(y_t) − log π_ref(y_t)] and the sequential KL D = Σ_t KL(π_ref‖π_θ). "
    "Per pair (chosen w, rejected l): the DPO reward margin β(Δ_w − Δ_l) and the TDPO margin "
    "β((Δ_w − Δ_l) − (D_l − D_w)) = β((Δ_w + D_w) − (Δ_l + D_l)). Sort the pairs by any of them for any "
    "policy above; a link ending in #token=N opens with token N's numbers pinned.</p>"
)


def _asset(name: str) -> str:
    return resources.files("tdpo.token_view").joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict[str, Any]) -> str:
    """``data`` as JSON safe inside a script element (``<`` escaped; non-finite numbers refused)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def render_page(data: dict[str, Any]) -> str:
    """The whole HTML document of the view of ``data`` (the dict :func:`tdpo.token_view.view_pairs` or
    :func:`tdpo.token_view.view_samples` returns)."""
    models = ", ".join(data["models"])
    title = html.escape(f"tdpo inspect: {models} against {data['reference']}")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>\n{_asset('page.css')}</style></head>",
        "<body>",
        "<header><h1>Token-level view</h1><p id=\"meta\"></p>",
        '<div id="controls"><label for="sort-key">sort by</label><select id="sort-key"></select>',
        '<label for="sort-model">of</label><select id="sort-model"></select>',
        '<select id="sort-order" aria-label="order"><option value="desc">largest first</option>'
        '<option value="asc">smallest first</option></select>',
        '<label for="shade">shade by</label><select id="shade"><option value="ratio">log-ratio</option>'
        '<option value="kl">per-token KL</option></select></div>',
        '<div id="legend"></div>',
        f'<details id="help"><summary>What the colours and numbers are</summary>{HELP}</details></header>',
        '<main id="items"></main>',
        '<div id="detail" hidden></div>',
        f'<script type="application/json" id="tdpo-data">{_script_json(data)}</script>',
        f"<script>\n{_asset('page.js')}</script>",
        "</body></html>",
        "",
    ])


def write_page(data: dict[str, Any], path: str | Path) -> Path:
    """Write the view of ``data`` to ``path`` (folders created; replaced atomically); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_page(data))
    return path
