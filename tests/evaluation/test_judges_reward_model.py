"""A tiny sequence-classification model as the judge."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaForSequenceClassification

from tdpo.evaluation.judges import RewardModelJudge, conversation_text
from tdpo.evaluation.questions import Question
from tests.tiny_models import tiny_llama_config


def questions_and_answers():
    questions = [Question("1", "writing", ("Write a haiku.",)), Question("2", "math", ("2+2?", "And 3+3?")),
                 Question("3", "math", ("Name a prime.",)), Question("4", "writing", ("Same?",))]
    a = {"1": ("Leaves fall softly down",), "2": ("4", "6"), "3": ("7",), "4": ("identical",)}
    b = {"1": ("no",), "2": ("five", "I don't know"), "3": ("Nine is prime.",), "4": ("identical",)}
    return questions, a, b


def score_float64(model, tokenizer, text):
    """The reward model's score of one text, alone (no padding), in float64."""
    model64 = copy.deepcopy(model).double()
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return float(model64(ids).logits[0, 0])


def test_reward_model_judge_matches_individual_scores(reward_model, tokenizer):
    questions, a, b = questions_and_answers()
    judge = RewardModelJudge(reward_model, tokenizer, batch_size=3)
    judgments = judge.judge(questions, a, b, progress=False)
    for q, j in zip(questions, judgments, strict=True):
        sa = score_float64(reward_model, tokenizer, conversation_text(tokenizer, q, a[q.question_id]))
        sb = score_float64(reward_model, tokenizer, conversation_text(tokenizer, q, b[q.question_id]))
        assert j.score_a == pytest.approx(sa, abs=1e-5) and j.score_b == pytest.approx(sb, abs=1e-5)
        expected = "win" if sa > sb else "loss" if sb > sa else "tie"
        if q.question_id != "4":
            assert j.outcome == expected
    assert judgments[3].outcome == "tie"  # identical answers
    assert {j.outcome for j in judgments[:3]} <= {"win", "loss"}


def test_tie_margin(reward_model, tokenizer):
    questions, a, b = questions_and_answers()
    judgments = RewardModelJudge(reward_model, tokenizer, tie_margin=1e6).judge(questions, a, b, progress=False)
    assert [j.outcome for j in judgments] == ["tie"] * 4


def test_hh_layout_without_chat_template(tokenizer):
    q = Question("2", "math", ("2+2?", "And 3+3?"))
    assert conversation_text(tokenizer, q, ("4", "6")) == "\n\nHuman: 2+2?\n\nAssistant: 4\n\nHuman: And 3+3?\n\nAssistant: 6"
    with pytest.raises(ValueError, match="2 turn"):
        conversation_text(tokenizer, q, ("4",))


def test_rejects_models_with_several_outputs(tokenizer):
    model = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=2))
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelJudge(model, tokenizer)


def test_chat_template_layout(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    q = Question("2", "math", ("2+2?", "And 3+3?"))
    assert conversation_text(tok, q, ("4", "6")) == "[user]2+2?[assistant]4[user]And 3+3?[assistant]6"
