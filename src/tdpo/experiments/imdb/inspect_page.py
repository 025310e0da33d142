"""The IMDb experiment's token-level view: ``inspect.html``, held-out pairs token by token.

:func:`step_inspect` writes the page of :mod:`tdpo.token_view` for a few held-out preference pairs
(``data/pairs_eval.jsonl``, which no run trains on) under the finished runs that evaluate the held-out
pairs (:meth:`~tdpo.experiments.imdb.experiment.ImdbConfig.pair_eval_method_list`: DPO and TDPO2 in ``tdpo demo``),
side by side, against the SFT model (their reference). The pairs are taken in turn from every held-out
prefix, so that each prefix shows. The report links the page when it exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.layout import paths, sft_model_path
from tdpo.experiments.imdb.run_configs import MAX_PROMPT_LENGTH

logger = logging.getLogger(__name__)

#: Held-out pairs on the page.
INSPECT_PAIRS = 16


def spread_over_prompts(prompts: Sequence[object], count: int) -> list[int]:
    """Indices of ``count`` records taken in turn from each distinct prompt (in order of first appearance):
    the first record of every prompt, then the second of every prompt, ...; returned in data order."""
    groups: dict[object, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    chosen: list[int] = []
    rank = 0
    while len(chosen) < min(count, len(prompts)):
        chosen += [g[rank] for g in groups.values() if rank < len(g)][:count - len(chosen)]
        rank += 1
    return sorted(chosen)


def step_inspect(cfg: ImdbConfig, pairs: int = INSPECT_PAIRS) -> Path | None:
    """Write ``inspect.html`` (see the module docs) and return its path; None, with a message, when there
    are no held-out pairs or no finished run that evaluates them."""
    from tdpo.data import DataConfig, load_preference_data
    from tdpo.models import load_tokenizer
    from tdpo.token_view import ViewSettings, view_pairs, write_page

    p = paths(cfg)
    methods = [m for m in cfg.pair_eval_method_list() if p.final_model(m.name).is_dir()]
    if not p.pairs_eval.is_file() or not methods:
        logger.info("tdpo imdb: no token-level view (%s)", "no held-out pairs" if not p.pairs_eval.is_file()
                    else "no finished run evaluates the held-out pairs")
        return None
    reference = sft_model_path(cfg)
    tokenizer = load_tokenizer(reference)
    data_cfg = DataConfig(source=str(p.pairs_eval), shape="prompt_chosen_rejected", test_split="none", test_size=0,
                          max_prompt_length=MAX_PROMPT_LENGTH, max_length=MAX_PROMPT_LENGTH + cfg.max_new_tokens + 1,
                          cache=False)
    loaded = load_preference_data(data_cfg, tokenizer)
    prompts = [tuple(row) for row in loaded.train["prompt_input_ids"]]
    data = loaded.train.select(spread_over_prompts(prompts, pairs))
    page = view_pairs({m.label: str(p.final_model(m.name)) for m in methods}, reference, data, loaded.collate,
                      tokenizer, ViewSettings(beta=methods[0].beta, batch_size=8, progress=False),
                      source=f"{p.pairs_eval.name} ({len(data)} of {len(loaded.train)} held-out pairs)")
    write_page(page, p.inspect)
    logger.info("tdpo imdb: token-level view of %d held-out pairs under %s: %s", len(data),
                ", ".join(m.label for m in methods), p.inspect)
    return p.inspect
