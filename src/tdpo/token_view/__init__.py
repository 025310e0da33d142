"""The token-level view (``tdpo inspect``): which tokens a preference run moved, and how far.

For one or more policies against a reference, every response token is scored by both models
(:mod:`~tdpo.token_view.compute`, with the chunked :func:`tdpo.token_stats.token_details_from_hidden`)
and written into one self-contained HTML page (:mod:`~tdpo.token_view.page`): each token shaded by
its log-ratio ``log pi_theta(y_t) - log pi_ref(y_t)``, its log-probs, per-token forward KL and both
models' top-k alternatives on hover, per pair the sums and margins, the pairs sortable, the policies
side by side.

The page's data, a JSON-ready dict::

    {"tool": "tdpo 0.1.0 inspect", "mode": "pairs" | "samples", "beta": 0.1, "top_k": 5,
     "models": [name, ...], "paths": [path, ...], "reference": path, "source": "where the data came from",
     "vocab": {"id": "token text", ...},          # every id the page shows
     "items": [{"index": dataset row or prompt number, "prompt": text,
                "cells": [                         # one per model, in "models" order
                    {"responses": [{"role": "chosen" | "rejected" | "sample",
                                    "tokens": [token entry, ...]}, ...],
                     "stats": {...}}]}]}          # pair_stats or sample_stats

with token entries as :mod:`~tdpo.token_view.entries` describes (``"samples"`` mode adds the sampling
settings under ``"sampling"``).
"""

from tdpo.token_view.compute import ViewSettings, score_batch, view_pairs, view_samples
from tdpo.token_view.page import render_page, write_page

__all__ = ["ViewSettings", "render_page", "score_batch", "view_pairs", "view_samples", "write_page"]
