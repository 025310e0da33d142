"""The page's data for one response: every token's text and numbers, as JSON-ready values.

A token entry is ``{"t": text, "id": token id, "lp": log pi_theta(y_t), "lr": log pi_ref(y_t), "kl":
KL(pi_ref || pi_theta) at its position, "pt": [[id, prob], ...] the policy's top-k, "rt": the
reference's}``; the texts of the top-k ids are kept once per page in a ``vocab`` table
(:class:`TokenTexts`). Numbers keep 6 significant digits; a non-finite one (a log-probability of
``-inf``, an infinite KL) is written as the string ``"Infinity"``/``"-Infinity"``/``"NaN"``, which JSON
allows and the page's ``Number()`` reads back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tdpo.token_stats import TokenDetails


def number(value: float, digits: int = 6) -> float | str:
    """``value`` rounded to ``digits`` significant digits, or its name when it is not finite."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(f"{value:.{digits}g}")


class TokenTexts:
    """Decodes token ids for display, remembering every id it was asked about (the page's ``vocab``).

    Args:
        tokenizer: a Hugging Face tokenizer.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.vocab: dict[int, str] = {}

    def text(self, token_id: int) -> str:
        """The text of one token alone (special tokens shown as themselves)."""
        token_id = int(token_id)
        if token_id not in self.vocab:
            self.vocab[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return self.vocab[token_id]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The text each token of a response adds to the ones before it, so that the pieces join into
        the decoded response and a character made of several tokens' bytes shows whole on its last
        token (the tokens before it get ``""``); where decoding one more token rewrites the text before
        it, the token shows its own text."""
        out: list[str] = []
        before = ""
        for n in range(1, len(ids) + 1):
            now = self.tokenizer.decode(list(ids[:n]), skip_special_tokens=False)
            if not now.startswith(before):
                out.append(self.text(ids[n - 1]))
                before = now
                continue
            added = now[len(before):]
            if added.endswith("\ufffd") and n < len(ids):  # an unfinished character: wait for its bytes
                out.append("")
                continue
            out.append(added)
            before = now
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """A whole sequence's text, special tokens kept."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def _top(ids: torch.Tensor, logps: torch.Tensor, texts: TokenTexts) -> list[list[float | int | str]]:
    """``[k]`` ids and log-probs -> ``[[id, prob], ...]`` (their texts recorded in ``texts``)."""
    out = []
    for token_id, logp in zip(ids.tolist(), logps.tolist(), strict=True):
        texts.text(token_id)
        out.append([token_id, number(math.exp(logp), 5)])
    return out


def row_entries(details: TokenDetails, row: int, texts: TokenTexts) -> tuple[list[dict[str, Any]], float, float]:
    """The token entries of row ``row`` of a scored batch, and its sums ``Delta = sum_t (log pi_theta -
    log pi_ref)`` and ``D = sum_t KL_t`` (float64 sums of the float32 values).

    Args:
        details: :class:`~tdpo.token_stats.TokenDetails` of a batch (``N`` tokens, any rows).
        row: the batch row (``details.sequence_index`` value) to take.
        texts: records the texts of every id shown.
    """
    where = (details.sequence_index == row).nonzero(as_tuple=True)[0].tolist()
    ids = [int(details.targets[i]) for i in where]
    pieces = texts.pieces(ids)
    entries = []
    for piece, i in zip(pieces, where, strict=True):
        entries.append({
            "t": piece, "id": int(details.targets[i]), "lp": number(details.policy_logps[i]),
            "lr": number(details.reference_logps[i]), "kl": number(details.kl[i]),
            "pt": _top(details.policy_top_ids[i], details.policy_top_logps[i], texts),
            "rt": _top(details.reference_top_ids[i], details.reference_top_logps[i], texts),
        })
    index = torch.tensor(where, dtype=torch.long)
    delta = float(details.log_ratios[index].double().sum()) if where else 0.0
    kl = float(details.kl[index].double().sum()) if where else 0.0
    return entries, delta, kl


def pair_stats(delta_w: float, delta_l: float, kl_w: float, kl_l: float, beta: float) -> dict[str, float | str]:
    """A pair's numbers: ``Delta_w``, ``Delta_l``, the sequential KLs ``D_w``, ``D_l``, the DPO reward margin
    ``beta * (Delta_w - Delta_l)`` and the TDPO margin ``beta * ((Delta_w - Delta_l) - (D_l - D_w))``."""
    return {"delta_w": number(delta_w), "delta_l": number(delta_l), "kl_w": number(kl_w), "kl_l": number(kl_l),
            "kl_gap": number(kl_l - kl_w), "dpo_margin": number(beta * (delta_w - delta_l)),
            "tdpo_margin": number(beta * ((delta_w - delta_l) - (kl_l - kl_w)))}


def sample_stats(delta: float, kl: float, beta: float) -> dict[str, float | str]:
    """A sample's numbers: ``Delta``, the sequential KL ``D`` and the DPO implicit reward ``beta * Delta``."""
    return {"delta": number(delta), "kl": number(kl), "reward": number(beta * delta)}
