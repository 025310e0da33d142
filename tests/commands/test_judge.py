"""``tdpo judge`` end to end: a fake chat-completions server on loopback, and a tiny reward model."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from tdpo.commands.judge import main
from tests.evaluation.fake_chat_server import KEY_FORMS, KEY_PARTS, FakeChatServer
from tests.evaluation.key_leaks import leaks
from tests.tiny_models import byte_tokenizer, tiny_causal_lm, tiny_llama_config

KEY_ENV = "TDPO_TEST_JUDGE_KEY"
SECRET = "sk-command-test-secret-91"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def files(tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", [
        {"question_id": 1, "category": "writing", "turns": ["Write a line.", "Shorter."]},
        {"question_id": 2, "category": "writing", "turns": ["Another line."]},
        {"question_id": 3, "category": "math", "turns": ["1+1?"]},
        {"question_id": 4, "category": "math", "turns": ["2+2?"]},
    ])
    a = write_jsonl(tmp_path / "a.jsonl", [
        {"question_id": 1, "model_id": "A", "choices": [{"index": 0, "turns": ["GOOD line", "GOOD"]}]},
        {"question_id": 2, "turns": ["meh"]}, {"question_id": 3, "answer": "GOOD 2"}, {"question_id": 4, "answer": "4"}])
    b = write_jsonl(tmp_path / "b.jsonl", [
        {"question_id": 1, "turns": ["plain", "plain"]}, {"question_id": 2, "turns": ["GOOD other"]},
        {"question_id": 3, "answer": "3"}, {"question_id": 4, "answer": "four"}])
    return questions, a, b


def test_chat_judge_command_and_resume(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    questions, a, b = files
    out = tmp_path / "out"
    judge_cfg = tmp_path / "judge.yaml"
    with FakeChatServer() as server:
        judge_cfg.write_text(f"base_url: {server.url}\nmodel: fake-gpt\napi_key_env: {KEY_ENV}\nmax_workers: 2\n")
        argv = ["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b), "--name-a", "tdpo2",
                "--name-b", "dpo", "--judge-config", str(judge_cfg), "--output-dir", str(out), "--no-progress"]
        assert main(argv) == 0
        assert len(server.requests) == 8
        printed = capsys.readouterr().out
        assert "tdpo2 (a) vs dpo (b)" in printed and "overall" in printed
        summary = json.loads((out / "winrates.json").read_text())
        rows = {r["category"]: r for r in summary["rows"]}
        assert (rows["writing"]["wins"], rows["writing"]["losses"]) == (1, 1)
        assert (rows["math"]["wins"], rows["math"]["ties"]) == (1, 1)
        assert rows["overall"]["win_rate"] == pytest.approx(2 / 4)
        assert summary["meta"]["requests_sent"] == 8 and summary["meta"]["judge_model"] == "fake-gpt"
        with (out / "per_question.csv").open() as handle:
            per_q = {r["question_id"]: r["outcome"] for r in csv.DictReader(handle)}
        assert per_q == {"1": "win", "2": "loss", "3": "win", "4": "tie"}
        # a rerun pays nothing
        assert main(argv) == 0
        assert len(server.requests) == 8
        assert json.loads((out / "winrates.json").read_text())["meta"]["cache_hits"] == 8
    for path in out.iterdir():
        assert SECRET not in path.read_text()


def test_failed_requests_exit_1_and_rerun_retries(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    questions, a, b = files
    out = tmp_path / "out"
    with FakeChatServer() as server:
        server.queue(("status", 503), ("status", 503))
        argv = ["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b), "--base-url", server.url,
                "--api-key-env", KEY_ENV, "--max-retries", "0", "--max-workers", "1", "--output-dir", str(out),
                "--no-progress"]
        assert main(argv) == 1
        assert "rerun the same command" in capsys.readouterr().err
        assert main(argv) == 0
        assert len(server.requests) == 8 + 2


def test_missing_key_fails_before_generation(files, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    questions, a, _ = files
    code = main(["--questions", str(questions), "--answers-a", str(a), "--model-b", str(tmp_path / "no-model"),
                 "--api-key-env", KEY_ENV, "--output-dir", str(tmp_path / "out")])
    assert code == 1
    assert KEY_ENV in capsys.readouterr().err


ECHO_SECRET = "sk-T9q\\Lm4\"Xp7\\Rz2/Kb8\\Wc5+Hd3\\Nf6=Gj1\\Vs0%Ye5\\Ua8'Oi4\\Qr7&Zt2\\Mn"
"""A key that every escape changes: a backslash in every 8 characters, quotes and URL-reserved characters."""


def written_texts(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (walked, whatever its name), as text."""
    return {str(path.relative_to(folder)): path.read_bytes().decode("utf-8", errors="replace")
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_no_part_of_an_echoed_key_reaches_any_file_or_message(tmp_path, monkeypatch, capsys, caplog):
    """The server echoes the key whole, its first or last 40 characters or a middle slice, in five forms, in
    replies and in error bodies; every file the command writes, its output and its logs are searched for
    any 8 characters of the key in any of those forms."""
    monkeypatch.setenv(KEY_ENV, ECHO_SECRET)
    actions = [("echo_key", code, form, part) for code in (200, 401) for form in KEY_FORMS for part in KEY_PARTS]
    n = len(actions) // 2
    questions = write_jsonl(tmp_path / "question.jsonl",
                            [{"question_id": i, "category": "x", "turns": [f"Q{i}?"]} for i in range(n)])
    a = write_jsonl(tmp_path / "a.jsonl", [{"question_id": i, "answer": f"a{i}"} for i in range(n)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"question_id": i, "answer": f"b{i}"} for i in range(n)])
    out = tmp_path / "out"
    with FakeChatServer() as server, caplog.at_level("DEBUG"):
        server.queue(*actions)
        code = main(["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b),
                     "--base-url", server.url, "--api-key-env", KEY_ENV, "--max-retries", "0", "--max-workers", "1",
                     "--output-dir", str(out), "--no-progress"])
    assert code == 1  # the questions answered with 401 are errors
    assert len(server.requests) == len(actions) and not server.script  # every echo was served
    assert all(h.get("Authorization") == f"Bearer {ECHO_SECRET}" for h in server.headers)
    files = written_texts(out)
    assert set(files) == {"judgments.jsonl", "per_question.csv", "winrates.json"}
    printed = capsys.readouterr()
    for name, text in {**files, "stdout": printed.out, "stderr": printed.err, "logs": caplog.text}.items():
        assert leaks(text, ECHO_SECRET) == [], name
    assert files["judgments.jsonl"].count("[API key]") == n and files["per_question.csv"].count("[API key]") == n


def test_key_ending_in_carriage_return_is_refused_by_the_command(files, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET + "\r")  # from a .env file with Windows line endings
    questions, a, b = files
    out = tmp_path / "out"
    with FakeChatServer() as server, caplog.at_level("DEBUG"):
        code = main(["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b),
                     "--base-url", server.url, "--api-key-env", KEY_ENV, "--output-dir", str(out), "--no-progress"])
    assert code == 1 and server.requests == []
    printed = capsys.readouterr()
    assert f"environment variable {KEY_ENV} ends with whitespace" in printed.err
    for name, text in {**written_texts(out), "stdout": printed.out, "stderr": printed.err, "logs": caplog.text}.items():
        assert leaks(text, SECRET + "\r") == [] and "sk-" not in text, name


def test_reward_judge_with_generated_answers(tmp_path, capsys):
    from transformers import LlamaForSequenceClassification

    tokenizer = byte_tokenizer()
    for name, seed in (("m1", 0), ("m2", 1)):
        tiny_causal_lm(seed, len(tokenizer), scale=20.0).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    torch.manual_seed(5)
    LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1)).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hi\nCount to three\nName a colour\n")
    out = tmp_path / "out"
    code = main(["--questions", str(prompts), "--model-a", str(tmp_path / "m1"), "--model-b", str(tmp_path / "m2"),
                 "--judge", "reward", "--reward-model", str(tmp_path / "rm"), "--greedy", "--max-new-tokens", "5",
                 "--batch-size", "2", "--output-dir", str(out), "--no-progress"])
    assert code == 0
    answers = sorted(p.name for p in out.glob("answers_*.jsonl"))
    assert answers == ["answers_a_m1.jsonl", "answers_b_m2.jsonl"]
    with (out / "per_question.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["question_id"] for r in rows] == ["1", "2", "3"]
    for r in rows:
        sa, sb = float(r["score_a"]), float(r["score_b"])
        assert r["outcome"] == ("win" if sa > sb else "loss" if sb > sa else "tie")
    summary = json.loads((out / "winrates.json").read_text())
    assert summary["rows"][-1]["questions"] == 3 and summary["meta"]["judge"] == "reward"


@pytest.fixture()
def ctrl_c_raises():
    """Python's own SIGINT handler for the test: a runner started in the background (``cmd &`` in a script,
    as CI may be) inherits SIGINT ignored, and Python then leaves it ignored, so Ctrl-C would never arrive."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupted_run_resumes_without_paying_twice(files, tmp_path, monkeypatch, capsys, ctrl_c_raises):
    """A real SIGINT to the main thread while the fourth request is in flight: the queued requests are dropped,
    the one in flight finishes and is cached, the command exits 130 with a message, and the rerun asks only for
    the other four."""
    import signal
    import threading
    import time

    from tdpo.evaluation.judges import ChatCompletionsJudge

    monkeypatch.setenv(KEY_ENV, SECRET)
    questions, a, b = files
    out = tmp_path / "out"
    original = ChatCompletionsJudge.complete
    calls = {"n": 0}

    def ctrl_c_during_the_fourth(self, messages):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C 0.2 s into this request, which the server answers after 1.5 s
            main_thread = threading.main_thread().ident
            threading.Timer(0.2, signal.pthread_kill, (main_thread, signal.SIGINT)).start()
        return original(self, messages)

    with FakeChatServer() as server:
        server.queue(("ok",), ("ok",), ("ok",), ("slow", 1.5))
        argv = ["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b), "--base-url", server.url,
                "--api-key-env", KEY_ENV, "--max-workers", "1", "--output-dir", str(out), "--no-progress"]
        monkeypatch.setattr(ChatCompletionsJudge, "complete", ctrl_c_during_the_fourth)
        start = time.monotonic()
        assert main(argv) == 130
        assert time.monotonic() - start >= 1.5  # waited for the request in flight
        assert "interrupted" in capsys.readouterr().err
        assert len(server.requests) == 4
        assert len((out / "judgments.jsonl").read_text().splitlines()) == 4
        assert not (out / "winrates.json").exists()
        monkeypatch.setattr(ChatCompletionsJudge, "complete", original)
        assert main(argv) == 0
        assert len(server.requests) == 8
        meta = json.loads((out / "winrates.json").read_text())["meta"]
        assert (meta["requests_sent"], meta["cache_hits"]) == (4, 4)
    with (out / "per_question.csv").open() as handle:
        assert {r["question_id"]: r["outcome"] for r in csv.DictReader(handle)} == {
            "1": "win", "2": "loss", "3": "win", "4": "tie"}


def test_default_names_and_readable_outputs(files, tmp_path, monkeypatch, capsys):
    questions, a, b = files
    out = tmp_path / "out"
    with FakeChatServer() as server:
        monkeypatch.setenv(KEY_ENV, SECRET)
        assert main(["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b), "--base-url",
                     server.url,
                     "--api-key-env", KEY_ENV, "--output-dir", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("a (a) vs b (b)")  # the answer files' names
    assert table[-1].split()[:7] == ["overall", "4", "2", "1", "1", "0", "0"]
    meta = json.loads((out / "winrates.json").read_text())["meta"]
    assert (meta["model_a"], meta["model_b"]) == ("a", "b")
    assert meta["base_url"] == server.url
    with (out / "per_question.csv").open() as handle:
        rows = {r["question_id"]: r for r in csv.DictReader(handle)}
    assert (rows["1"]["a_first_prefers"], rows["1"]["b_first_prefers"]) == ("a", "a")
    assert (rows["2"]["a_first_prefers"], rows["2"]["b_first_prefers"]) == ("b", "b")
    for path in out.iterdir():
        assert SECRET not in path.read_text()


def test_bad_inputs_fail_before_any_request(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    questions, a, b = files
    short = write_jsonl(tmp_path / "short.jsonl", [{"question_id": i, "answer": "x"} for i in (1, 2, 3, 4)])
    with FakeChatServer() as server:
        base = ["--questions", str(questions), "--base-url", server.url, "--api-key-env", KEY_ENV,
                "--output-dir", str(tmp_path / "out"), "--no-progress"]
        assert main(base + ["--answers-a", str(a), "--answers-b", str(short)]) == 1
        err = capsys.readouterr().err
        assert f"{short}, line 1: question_id '1' has 2 turn(s) but its answer has 1" in err
        assert main(base + ["--answers-a", str(a), "--answers-b", str(b), "--confidence", "95"]) == 1
        assert "--confidence" in capsys.readouterr().err
        assert server.requests == []


def test_model_display_names():
    from tdpo.commands.judge import _model_name

    assert _model_name("runs/tdpo2/final") == "tdpo2/final"
    assert _model_name("runs/dpo/checkpoints/step-000120") == "dpo/step-000120"
    assert _model_name("/models/m1") == "m1" and _model_name("builtin") == "builtin"


def test_bad_judge_config_is_named(files, tmp_path, capsys):
    questions, a, b = files
    cfg = tmp_path / "judge.yaml"
    base = ["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b), "--api-key-env", "",
            "--judge-config", str(cfg), "--output-dir", str(tmp_path / "out")]
    cfg.write_text("base_url: http://127.0.0.1:9/v1\nmax_tokens: many\n")
    assert main(base) == 1
    assert f"judge settings (from {cfg} and the flags): judge max_tokens must be an integer" in capsys.readouterr().err
    cfg.write_text("base_url: http://127.0.0.1:9/v1\nmodle: gpt-4\n")
    assert main(base) == 1
    assert f"{cfg}: unknown judge setting(s) modle" in capsys.readouterr().err


def test_missing_openai_client_is_named(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openai", None)  # as if the judge extra were not installed
    monkeypatch.delitem(sys.modules, "tdpo.evaluation.judge_client", raising=False)
    questions, a, b = files
    code = main(["--questions", str(questions), "--answers-a", str(a), "--answers-b", str(b), "--api-key-env", "",
                 "--base-url", "http://127.0.0.1:9/v1", "--output-dir", str(tmp_path / "out")])
    assert code == 1
    assert "pip install 'tdpo[judge]'" in capsys.readouterr().err
