"""The reward-model judge: pairs of answers compared by the scalar score of a sequence-classification model.

Any Hugging Face sequence-classification model with one output scores the full conversation with each
model's answers; ``a`` wins if its score exceeds ``b``'s by more than :attr:`RewardModelJudge.tie_margin`,
loses if it is lower by more than that, and ties otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from tdpo.evaluation.judgment import PairJudgment, check_answers
from tdpo.evaluation.questions import Question


def conversation_text(tokenizer: Any, question: Question, answers: Sequence[str]) -> str:
    """The text a reward model scores: the tokenizer's chat template if it has one, else the
    Anthropic HH layout ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``."""
    if len(answers) != len(question.turns):
        raise ValueError(f"question {question.question_id!r} has {len(question.turns)} turn(s) but "
                         f"{len(answers)} answer(s) were given")
    if getattr(tokenizer, "chat_template", None):
        messages = []
        for turn, answer in zip(question.turns, answers, strict=True):
            messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": answer}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "".join(f"\n\nHuman: {turn}\n\nAssistant: {answer}" for turn, answer in zip(question.turns, answers, strict=True))


@dataclass
class RewardModelJudge:
    """Judges pairs by the scalar score of a sequence-classification reward model.

    ``model`` is any ``AutoModelForSequenceClassification`` with ``num_labels == 1``; ``tokenizer`` its
    tokenizer.
    """

    model: Any
    """The reward model (put in eval mode by :meth:`score`)."""
    tokenizer: Any
    """Its tokenizer."""
    batch_size: int = 8
    """Conversations scored per forward pass (1 if the model has no pad token id)."""
    max_length: int = 2048
    """Conversations are truncated to this many tokens, keeping the end (where the answer is)."""
    tie_margin: float = 0.0
    """Score differences within this margin count as ties."""
    scores_cache: dict[str, float] = field(default_factory=dict, repr=False)
    """Scores already computed, keyed by conversation text."""

    def __post_init__(self) -> None:
        num_labels = getattr(self.model.config, "num_labels", None)
        if num_labels != 1:
            raise ValueError(f"a reward model must have one output (num_labels=1); this one has {num_labels}")
        if self.tie_margin < 0:
            raise ValueError(f"tie_margin must be >= 0; got {self.tie_margin}")

    def score(self, texts: Sequence[str], progress: bool = False) -> list[float]:
        """Scores of ``texts``: the model's single logit for each, as floats.

        Batches are right-padded with the model's pad token (``input_ids`` and ``attention_mask`` of shape
        ``(batch, longest)``); the model reads its score at the last token that is not the pad token, as it
        does for a single unpadded text. Texts longer than ``max_length`` tokens keep their last
        ``max_length`` tokens.
        """
        import torch
        from torch.nn.utils.rnn import pad_sequence

        self.model.eval()
        config = self.model.config
        pad_id = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                         "pad_token_id", None)
        batch_size = self.batch_size if pad_id is not None else 1
        device = next(self.model.parameters()).device
        todo = [t for t in dict.fromkeys(texts) if t not in self.scores_cache]
        for start in tqdm(range(0, len(todo), batch_size), desc="scoring", disable=not progress):
            chunk = todo[start:start + batch_size]
            rows = [torch.tensor(self.tokenizer(t, add_special_tokens=True)["input_ids"][-self.max_length:],
                                 dtype=torch.long) for t in chunk]
            input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_id if pad_id is not None else 0)
            attention = pad_sequence([torch.ones_like(row) for row in rows], batch_first=True, padding_value=0)
            with torch.no_grad():
                logits = self.model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            for text, value in zip(chunk, logits[:, 0].float().tolist(), strict=True):
                self.scores_cache[text] = value
        return [self.scores_cache[t] for t in texts]

    def judge(self, questions: Sequence[Question], answers_a: dict[str, Sequence[str]],
              answers_b: dict[str, Sequence[str]], progress: bool = True) -> list[PairJudgment]:
        """One :class:`PairJudgment` per question, by comparing the two conversations' scores."""
        check_answers(questions, answers_a, "a")
        check_answers(questions, answers_b, "b")
        texts_a = [conversation_text(self.tokenizer, q, answers_a[q.question_id]) for q in questions]
        texts_b = [conversation_text(self.tokenizer, q, answers_b[q.question_id]) for q in questions]
        scores = self.score(texts_a + texts_b, progress=progress)
        n = len(questions)
        judgments = []
        for question, sa, sb in zip(questions, scores[:n], scores[n:], strict=True):
            if sa - sb > self.tie_margin:
                outcome = "win"
            elif sb - sa > self.tie_margin:
                outcome = "loss"
            else:
                outcome = "tie"
            judgments.append(PairJudgment(question.question_id, question.category, outcome, score_a=sa, score_b=sb))
        return judgments
