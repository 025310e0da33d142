"""Pairwise judges: an OpenAI-compatible chat-completions model, or a reward model.

Both compare the answers of two models, ``a`` and ``b``, to the same questions and give each question
one :class:`PairJudgment` whose ``outcome`` is seen from model ``a``: ``win``, ``tie``, ``loss``, or

``invalid``
    the chat judge's reply could not be parsed into a verdict (it is never guessed);
``error``
    the request failed for good (after its retries); nothing is cached, so a rerun tries again.

This module gathers the judges' public names in one place; they live in

* :mod:`tdpo.evaluation.judgment`: the outcomes, :class:`PairJudgment`, verdict parsing and the rule that
  combines the two answer orders;
* :mod:`tdpo.evaluation.chat_judge`: the chat-completions judge (prompt, settings, both-order judging,
  caching), whose HTTP side is :mod:`tdpo.evaluation.judge_client` (the ``openai`` client, an optional extra:
  ``pip install 'tdpo[judge]'``) and whose API key is checked and redacted by :mod:`tdpo.evaluation.api_key`;
* :mod:`tdpo.evaluation.reward_judge`: the reward-model judge.
"""

from __future__ import annotations

from tdpo.evaluation.chat_judge import (
    DEFAULT_PROMPT,
    DEFAULT_SYSTEM_PROMPT,
    ChatCompletionsJudge,
    ChatJudgeConfig,
    render_conversation,
    render_reference,
)
from tdpo.evaluation.judgment import (
    OUTCOMES,
    JudgeRequestError,
    PairJudgment,
    check_answers,
    combine_orders,
    parse_verdict,
)
from tdpo.evaluation.reward_judge import RewardModelJudge, conversation_text

__all__ = [
    "DEFAULT_PROMPT",
    "DEFAULT_SYSTEM_PROMPT",
    "OUTCOMES",
    "ChatCompletionsJudge",
    "ChatJudgeConfig",
    "JudgeRequestError",
    "PairJudgment",
    "RewardModelJudge",
    "check_answers",
    "combine_orders",
    "conversation_text",
    "parse_verdict",
    "render_conversation",
    "render_reference",
]
