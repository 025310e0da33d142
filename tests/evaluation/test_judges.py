"""The chat-completions judge against a real HTTP server on loopback (tests/evaluation/fake_chat_server.py),
through the real openai client: every judgment below is an HTTP request the fake server saw."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from tdpo.evaluation.cache import JudgmentCache
from tdpo.evaluation.judges import (
    ChatCompletionsJudge,
    ChatJudgeConfig,
    combine_orders,
    parse_verdict,
)
from tdpo.evaluation.questions import Question
from tests.evaluation.fake_chat_server import KEY_FORMS, KEY_PARTS, FakeChatServer
from tests.evaluation.key_leaks import leaks

KEY_ENV = "TDPO_TEST_JUDGE_KEY"
SECRET = "sk-test-do-not-leak-7f3a"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture
def server():
    with FakeChatServer() as srv:
        yield srv


FAST = {"Retry-After": "0.01"}
"""Headers of a scripted failure that asks the client to retry at once (keeps the tests fast)."""


def make_judge(server, cache=None, **overrides):
    settings = dict(base_url=server.url, model="fake-judge", api_key_env=KEY_ENV, timeout=5.0, max_retries=3,
                    max_workers=1)
    settings.update(overrides)
    return ChatCompletionsJudge(ChatJudgeConfig(**settings), cache=cache)


def gaps(server):
    """Seconds between the arrivals of consecutive requests at the server."""
    return [later - earlier for earlier, later in zip(server.times, server.times[1:])]


def qa(n_questions=3):
    """Questions where a wins q1, b wins q2 and q3 is even (both GOOD)."""
    questions = [Question(str(i), "writing" if i < 2 else "math", (f"Question {i}?",)) for i in range(n_questions)]
    a = {"0": ("GOOD answer from a",), "1": ("weak answer from a",), "2": ("GOOD from a",)}
    b = {"0": ("weak answer from b",), "1": ("GOOD answer from b",), "2": ("GOOD from b",)}
    for i in range(3, n_questions):
        a[str(i)], b[str(i)] = (f"GOOD a{i}",), (f"plain b{i}",)
    return questions, a, b


def user_text(request):
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B is better.\nVerdict: A", "A"),
        ("Comparison...\n**Verdict: B**", "B"),
        ("neither\nverdict - TIE.", "tie"),
        ("Response A is clearer.\n\nA", "A"),
        ("Both fine.\n**Final verdict:** Assistant B.", "B"),
        ("A is longer but B is right.\nResponse B", "B"),
        ("Verdict: Assistant C", None),
        ("Verdict: A\nOn reflection,\nVerdict: B", None),
        ("Verdict: C", None),
        ("I cannot decide which one.", None),
        ("", None),
        ("Both are great, A and B alike", None),
    ],
)
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) == expected


def test_combine_orders_rule():
    to_pref_first = {"A": "a", "B": "b", "tie": "tie"}
    to_pref_second = {"A": "b", "B": "a", "tie": "tie"}
    for v1 in ("A", "B", "tie", None):
        for v2 in ("A", "B", "tie", None):
            if v1 is None or v2 is None:
                expected = "invalid"
            else:
                p1, p2 = to_pref_first[v1], to_pref_second[v2]
                expected = {"a": "win", "b": "loss"}[p1] if p1 == p2 and p1 != "tie" else "tie"
            assert combine_orders(v1, v2) == expected


def test_happy_path_both_orders_and_key_handling(server, tmp_path, caplog):
    questions, a, b = qa()
    cache_path = tmp_path / "cache.jsonl"
    judge = make_judge(server, cache=JudgmentCache(cache_path))
    with caplog.at_level(logging.DEBUG):
        judgments = judge.judge(questions, a, b, progress=False)
    assert [j.outcome for j in judgments] == ["win", "loss", "tie"]
    assert [(j.verdict_a_first, j.verdict_b_first) for j in judgments] == [("A", "B"), ("B", "A"), ("tie", "tie")]
    assert len(server.requests) == 6 and judge.requests_sent == 6
    # each question was asked once with a's answer shown first and once with b's shown first
    for q in questions:
        texts = [user_text(r) for r in server.requests if f"Question {q.question_id}?" in user_text(r)]
        assert len(texts) == 2
        positions = sorted(
            (t.index(a[q.question_id][0]) < t.index(b[q.question_id][0])) for t in texts
        )
        assert positions == [False, True]
    for request in server.requests:
        assert request["model"] == "fake-judge"
        assert request["temperature"] == 0.0
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in server.headers)
    # the key never reaches the cache or the logs
    assert SECRET not in cache_path.read_text()
    assert SECRET not in caplog.text
    assert len(cache_path.read_text().splitlines()) == 6


def test_position_biased_judge_gives_ties(tmp_path):
    with FakeChatServer(judge=lambda _: "The first one.\nVerdict: A") as srv:
        questions, a, b = qa()
        judgments = make_judge(srv).judge(questions, a, b, progress=False)
    assert [j.outcome for j in judgments] == ["tie", "tie", "tie"]


def test_one_order_says_tie(server):
    questions, a, b = qa(1)
    server.queue(("ok",), ("reply", "They are equally good.\nVerdict: tie"))
    (judgment,) = make_judge(server).judge(questions, a, b, progress=False)
    assert (judgment.verdict_a_first, judgment.verdict_b_first) == ("A", "tie")
    assert judgment.outcome == "tie"


def test_429_is_retried_honouring_retry_after(server, caplog):
    questions, a, b = qa(1)
    server.queue(("status", 429, {"Retry-After": "0.05"}), ("status", 429, {}))
    judge = make_judge(server)
    with caplog.at_level(logging.WARNING):
        (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "win"
    assert judge.requests_sent == 4 and len(server.requests) == 4
    first, second = gaps(server)[:2]
    assert 0.05 <= first < 0.3  # as long as Retry-After asked, shorter than the client's own back-off
    assert second >= 0.3  # no Retry-After: the client's back-off (about 0.5 s for a first retry)
    assert "429" in caplog.text and SECRET not in caplog.text


def test_no_retries_when_max_retries_is_0(server):
    questions, a, b = qa(1)
    server.queue(("status", 429, FAST))
    (judgment,) = make_judge(server, max_retries=0).judge(questions, a, b, progress=False)
    assert judgment.outcome == "error" and "HTTP 429 (gave up after 1 tries)" in judgment.error
    assert len(server.requests) == 2  # one per order: the 429 was not asked again


def test_retry_after_is_really_waited(server):
    questions, a, b = qa(1)
    server.queue(("status", 429, {"Retry-After": "1"}))
    judge = make_judge(server)
    start = time.monotonic()
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert time.monotonic() - start >= 0.95
    assert judgment.outcome == "win"


def test_500_backs_off_exponentially(server):
    questions, a, b = qa(1)
    server.queue(("status", 500), ("status", 503), ("status", 502, FAST))
    judge = make_judge(server)
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "win"
    assert judge.requests_sent == 5 and len(server.requests) == 5
    first, second, third = gaps(server)[:3]
    assert 0.3 <= first < second  # the client's back-off doubles (with up to 25% jitter)
    assert third < first  # a Retry-After overrides the back-off


def test_retries_exhausted_is_an_error_and_not_cached(server, tmp_path):
    questions, a, b = qa(1)
    server.queue(*[("status", 500, FAST)] * 3)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    judge = make_judge(server, cache=cache, max_retries=2)
    (judgment,) = judge.judge(questions, a, b, progress=False)
    # max_workers=1: the first order took all three failures, the second order went through
    assert judgment.outcome == "error"
    assert "gave up after 3 tries" in judgment.error
    assert judge.requests_sent == 4 and len(server.requests) == 4
    assert len(cache) == 1
    # a rerun asks only for the failed order
    rerun = make_judge(server, cache=JudgmentCache(tmp_path / "cache.jsonl"))
    (judgment,) = rerun.judge(questions, a, b, progress=False)
    assert judgment.outcome == "win"
    assert rerun.requests_sent == 1 and rerun.cache_hits == 1


def test_non_retryable_status_fails_at_once(server):
    questions, a, b = qa(1)
    server.queue(("status", 401), ("status", 400))
    judge = make_judge(server)
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "error"
    assert "HTTP 401" in judgment.error and "HTTP 400" in judgment.error
    assert "scripted failure" in judgment.error  # the server's own explanation is shown
    assert judge.requests_sent == 2 and len(server.requests) == 2
    assert SECRET not in judgment.error


def test_timeout_is_retried(server):
    questions, a, b = qa(1)
    server.queue(("slow", 3.0))
    judge = make_judge(server, timeout=0.3)
    start = time.monotonic()
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "win"
    assert judge.requests_sent == 3 and len(server.requests) == 3
    assert time.monotonic() - start < 2.5  # did not wait for the slow reply (0.3 s, a back-off, two replies)


def test_trickled_reply_times_out_as_a_whole(server):
    """Every byte comes within the socket time-out, but the whole reply takes longer than the time-out."""
    questions, a, b = qa(1)
    server.queue(("trickle", 4.0))
    judge = make_judge(server, timeout=0.5)
    start = time.monotonic()
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "win"
    assert judge.requests_sent == 3 and len(server.requests) == 3
    assert time.monotonic() - start < 2.5  # gave up on the 4 s trickle after about 0.5 s (then a back-off)


def test_timeouts_exhausted_are_an_error(server):
    questions, a, b = qa(1)
    server.queue(("slow", 1.0), ("slow", 1.0))
    judge = make_judge(server, timeout=0.2, max_retries=1)
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "error" and "timed out after 0.2 s (gave up after 2 tries)" in judgment.error


def test_garbled_body_is_retried(server):
    questions, a, b = qa(1)
    server.queue(("garbled",), ("garbled",))
    judge = make_judge(server)
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "win"
    assert judge.requests_sent == 4 and len(server.requests) == 4


def test_garbled_replies_exhausted_are_an_error(server):
    questions, a, b = qa(1)
    server.queue(("garbled",), ("garbled",))
    (judgment,) = make_judge(server, max_retries=1).judge(questions, a, b, progress=False)
    assert judgment.outcome == "error"
    assert "garbled reply (not a chat-completions body) (gave up after 2 tries)" in judgment.error


def test_unparseable_reply_is_invalid_cached_and_retryable(server, tmp_path):
    questions, a, b = qa(2)
    server.queue(("reply", "Hmm, hard to say."), ("ok",), ("ok",), ("ok",))
    cache_path = tmp_path / "cache.jsonl"
    judgments = make_judge(server, cache=JudgmentCache(cache_path)).judge(questions, a, b, progress=False)
    assert [j.outcome for j in judgments] == ["invalid", "loss"]
    assert judgments[0].verdict_a_first is None and judgments[0].verdict_b_first == "B"
    assert "unparseable" in judgments[0].error
    records = [json.loads(line) for line in cache_path.read_text().splitlines()]
    assert sum(r["verdict"] is None for r in records) == 1
    # resuming pays nothing, and the invalid reply stays invalid
    again = make_judge(server, cache=JudgmentCache(cache_path))
    assert [j.outcome for j in again.judge(questions, a, b, progress=False)] == ["invalid", "loss"]
    assert again.requests_sent == 0 and again.cache_hits == 4
    # asked to, the judge asks again for the invalid one only
    retry = make_judge(server, cache=JudgmentCache(cache_path))
    assert [j.outcome for j in retry.judge(questions, a, b, retry_invalid=True, progress=False)] == ["win", "loss"]
    assert retry.requests_sent == 1


def test_resume_from_cache(server, tmp_path):
    questions, a, b = qa(5)
    cache_path = tmp_path / "cache.jsonl"
    first = make_judge(server, cache=JudgmentCache(cache_path))
    partial = first.judge(questions[:2], a, b, progress=False)
    assert first.requests_sent == 4
    resumed = make_judge(server, cache=JudgmentCache(cache_path))
    full = resumed.judge(questions, a, b, progress=False)
    assert resumed.requests_sent == 6 and resumed.cache_hits == 4
    assert [j.outcome for j in full[:2]] == [j.outcome for j in partial]
    assert [j.outcome for j in full] == ["win", "loss", "tie", "win", "win"]
    # another judge model is another judgment: nothing is reused
    other = make_judge(server, cache=JudgmentCache(cache_path), model="other-judge")
    other.judge(questions[:1], a, b, progress=False)
    assert other.requests_sent == 2 and other.cache_hits == 0


def test_concurrency_is_bounded():
    questions, a, b = qa(8)
    with FakeChatServer(delay=0.1) as srv:
        judge = make_judge(srv, max_workers=3)
        start = time.monotonic()
        judgments = judge.judge(questions, a, b, progress=False)
        elapsed = time.monotonic() - start
        assert len(srv.requests) == 16
        assert 2 <= srv.max_in_flight <= 3
    assert elapsed < 16 * 0.1  # ran in parallel
    assert [j.outcome for j in judgments][:3] == ["win", "loss", "tie"]


def test_missing_key_is_a_clear_error(monkeypatch, server):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        make_judge(server)
    judge = make_judge(server, api_key_env="")  # a local server that needs no key
    questions, a, b = qa(1)
    assert judge.judge(questions, a, b, progress=False)[0].outcome == "win"
    assert all("Authorization" not in h for h in server.headers)


def test_config_errors():
    with pytest.raises(ValueError, match="base_url"):
        ChatJudgeConfig(base_url="localhost:8000")
    for url in ("http://user:sk-x@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1?api-key=sk-x"):
        with pytest.raises(ValueError, match="must not hold a user name, password, query string") as info:
            ChatJudgeConfig(base_url=url)
        assert "sk-x" not in str(info.value)
    with pytest.raises(ValueError, match="max_workers"):
        ChatJudgeConfig(max_workers=0)
    with pytest.raises(ValueError, match="conversation_b"):
        ChatJudgeConfig(prompt="only {conversation_a}")
    # settings from a YAML file arrive with any type: each bad one is named
    for field, value in [("temperature", "hot"), ("temperature", -0.5), ("max_tokens", 0), ("max_tokens", 2.5),
                         ("timeout", "60"), ("max_retries", True), ("use_reference", "yes"), ("model", ""),
                         ("api_key_env", None)]:
        with pytest.raises(ValueError, match=f"judge {field}"):
            ChatJudgeConfig(**{field: value})


def test_missing_answers_are_a_clear_error(server):
    questions, a, b = qa(2)
    del b["1"]
    with pytest.raises(ValueError, match="model b has no answer to question '1'"):
        make_judge(server).judge(questions, a, b, progress=False)
    a["0"] = ("x", "y")
    with pytest.raises(ValueError, match="question '0' has 1 turn"):
        make_judge(server).judge(questions, a, b, progress=False)
    assert server.requests == []


def test_connection_refused_is_retried_then_an_error():
    import socket

    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ChatJudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, max_retries=2,
                             max_workers=2, timeout=2.0)
    judge = ChatCompletionsJudge(config)
    questions, a, b = qa(1)
    (judgment,) = judge.judge(questions, a, b, progress=False)
    assert judgment.outcome == "error" and "connection error" in judgment.error
    assert "gave up after 3 tries" in judgment.error and f"127.0.0.1:{port}/v1/chat/completions" in judgment.error
    assert "ConnectError: could not connect" in judgment.error and "Connection refused" in judgment.error
    assert judge.requests_sent == 6  # three tries of each order


def test_retry_after_forms(server):
    """Retry-After as an HTTP date is honoured too; one that cannot be read falls back on the back-off."""
    from email.utils import formatdate

    questions, a, b = qa(1)
    # The date is written when the response is queued, before the judge is made and asks, and it has whole
    # seconds: 3 to 4 s away now, at least 1.5 s away when the first request arrives unless setting up
    # took over 1.5 s. The client's first back-off is at most 0.5 s.
    server.queue(("status", 429, {"Retry-After": formatdate(time.time() + 4, usegmt=True)}),
                 ("status", 503, {"Retry-After": "soon"}))
    (judgment,) = make_judge(server).judge(questions, a, b, progress=False)
    assert judgment.outcome == "win" and len(server.requests) == 4
    assert gaps(server)[0] >= 1.5  # waited until the date, longer than the client's first back-off


def test_reference_answers_are_shown_when_present(server):
    questions = [Question("m1", "math", ("What is 6*7?",), {"reference": ["42"]}),
                 Question("w1", "writing", ("Write {braces} here.",))]
    a = {"m1": ("GOOD: 42",), "w1": ("GOOD {x}",)}
    b = {"m1": ("41",), "w1": ("plain",)}
    judgments = make_judge(server).judge(questions, a, b, progress=False)
    assert [j.outcome for j in judgments] == ["win", "win"]
    texts = [user_text(r) for r in server.requests]
    with_reference = [t for t in texts if "[Reference]" in t]
    assert len(with_reference) == 2 and all("Reference answer: 42" in t and "6*7" in t for t in with_reference)
    assert all("{braces}" in t for t in texts if "Write" in t)
    make_judge(server, use_reference=False).judge(questions[:1], a, b, progress=False)
    assert "[Reference]" not in user_text(server.requests[-1])


def test_key_echoed_by_the_server_is_redacted(server, tmp_path, caplog):
    """A server (or proxy) that quotes the Authorization header back never gets the key into errors, logs,
    the cache or the judgments."""
    questions, a, b = qa(2)
    server.queue(("echo_auth", 401), ("echo_auth", 500), ("echo_auth", 200), ("ok",))
    cache_path = tmp_path / "cache.jsonl"
    judge = make_judge(server, cache=JudgmentCache(cache_path))
    with caplog.at_level(logging.DEBUG):
        judgments = judge.judge(questions, a, b, progress=False)
    assert judge.requests_sent == 5 and len(server.requests) == 5
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in server.headers)  # the key was sent
    assert judgments[0].outcome == "error" and "bad credentials: Bearer [API key]" in judgments[0].error
    assert "500" in caplog.text and "[API key]" not in caplog.text  # a 500's body is not logged at all
    cached = cache_path.read_text()
    assert "You sent Bearer [API key]." in cached
    for text in (cached, caplog.text, repr(judgments)):
        assert SECRET not in text


def test_identical_requests_are_sent_once(server, tmp_path):
    questions = [Question("1", "x", ("Same question?",)), Question("2", "y", ("Same question?",)),
                 Question("3", "y", ("Other?",))]
    a = {"1": ("GOOD",), "2": ("GOOD",), "3": ("GOOD",)}
    b = {"1": ("plain",), "2": ("plain",), "3": ("plain",)}
    judge = make_judge(server, cache=JudgmentCache(tmp_path / "cache.jsonl"), max_workers=4)
    judgments = judge.judge(questions, a, b, progress=False)
    assert [j.outcome for j in judgments] == ["win", "win", "win"]
    assert [j.question_id for j in judgments] == ["1", "2", "3"]
    assert judge.requests_sent == 4 and len(server.requests) == 4


def test_long_key_echoed_in_an_error_body_is_redacted_before_the_body_is_cut(server, tmp_path, monkeypatch):
    """A key longer than the 300 characters kept of an error body must not leak its first part: the body is
    redacted whole, then cut."""
    long_secret = "sk-" + "".join(f"{i:03d}" for i in range(200))  # 603 characters
    monkeypatch.setenv(KEY_ENV, long_secret)
    questions, a, b = qa(1)
    server.queue(("echo_auth", 401), ("echo_auth", 401))
    cache_path = tmp_path / "cache.jsonl"
    judgments = make_judge(server, cache=JudgmentCache(cache_path)).judge(questions, a, b, progress=False)
    assert judgments[0].outcome == "error" and "bad credentials: Bearer [API key]" in judgments[0].error
    for text in (repr(judgments), cache_path.read_text() if cache_path.exists() else ""):
        assert long_secret[:20] not in text and "sk-000001" not in text


def test_missing_openai_client_is_a_clear_error(monkeypatch, server):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # as if the judge extra were not installed
    monkeypatch.delitem(sys.modules, "tdpo.evaluation.judge_client", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'tdpo\[judge\]'"):
        make_judge(server)
    assert server.requests == []


def test_no_request_or_retry_after_stop(server):
    """After a stop (Ctrl-C) nothing more is sent: neither a new request nor a retry of one in progress."""
    import threading

    from tdpo.evaluation.judge_client import JudgeClient
    from tdpo.evaluation.judges import JudgeRequestError

    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    client = JudgeClient(server.url, None, timeout=5.0, max_retries=3, redact=str)
    client.stop()
    with pytest.raises(JudgeRequestError, match="interrupted before the request was sent"):
        client.complete(payload)
    assert server.requests == [] and client.requests_sent == 0
    client.resume()
    server.queue(("status", 503, {"Retry-After": "0.5"}))
    threading.Timer(0.2, client.stop).start()  # during the wait before the retry
    with pytest.raises(JudgeRequestError, match="interrupted"):
        client.complete(payload)
    assert len(server.requests) == 1 and client.requests_sent == 1
    client.close()


def test_backoff_settings_are_accepted_but_no_longer_used(server, caplog):
    with caplog.at_level(logging.WARNING):
        make_judge(server)
    assert "backoff" not in caplog.text
    with caplog.at_level(logging.WARNING):
        make_judge(server, backoff_initial=0.5, backoff_max=10.0)
    assert "backoff_initial and backoff_max are no longer used" in caplog.text


def test_reply_text_of_chat_completion_bodies():
    from types import SimpleNamespace

    from tdpo.evaluation.judge_client import reply_text

    def completion(content):
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=content))])

    assert reply_text(completion("Verdict: A")) == "Verdict: A"
    for garbled in ("<html>not json", completion(None), SimpleNamespace(choices=[]), SimpleNamespace(), None):
        assert reply_text(garbled) is None


ECHO_SECRET = "sk-T9q\\Lm4\"Xp7\\Rz2/Kb8\\Wc5+Hd3\\Nf6=Gj1\\Vs0%Ye5\\Ua8'Oi4\\Qr7&Zt2\\Mn"
"""A key that every escape changes: a backslash in every 8 characters, quotes and URL-reserved characters."""


def test_key_with_a_carriage_return_is_refused_before_any_request(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET + "\r")  # a .env file with Windows line endings
    with pytest.raises(ValueError, match=f"environment variable {KEY_ENV} ends with whitespace") as raised:
        make_judge(server)
    assert leaks(str(raised.value), SECRET + "\r") == [] and "sk-" not in str(raised.value)
    assert server.requests == []


def test_transport_error_text_is_never_copied(server):
    """h11 refuses a header holding a control character with a message that quotes the header: the client
    describes the failure by the exception's type instead, even with no redaction at all."""
    from tdpo.evaluation.judge_client import JudgeClient
    from tdpo.evaluation.judges import JudgeRequestError

    key = SECRET + "\r"  # past read_api_key, which would refuse it
    client = JudgeClient(server.url, key, timeout=5.0, max_retries=1, redact=str)
    with pytest.raises(JudgeRequestError) as raised:
        client.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    message = str(raised.value)
    assert "connection error: LocalProtocolError" in message and "illegal character in a header" in message
    assert "gave up after 2 tries" in message and server.url in message
    assert leaks(message, key) == [] and "Bearer" not in message
    assert server.requests == []  # nothing was sent
    client.close()


def test_transport_error_text_names_types_and_errno_never_messages():
    """Every exception in the chain says the key here; the description keeps only types, errno texts and
    OpenSSL's reason code."""
    import errno
    import socket
    import ssl

    import httpx2
    import openai

    from tdpo.evaluation.judge_client import transport_error_text
    from tdpo.evaluation.judges import JudgeRequestError

    def chain(*links):
        for outer, inner in zip(links, links[1:]):
            outer.__cause__ = inner
        return links[0]

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    said = f"Bearer {SECRET}"

    def wrapped(*inner):
        return chain(openai.APIConnectionError(message=said, request=request), *inner)

    refused = ConnectionRefusedError(errno.ECONNREFUSED, said)
    assert (transport_error_text(wrapped(httpx2.ConnectError(said), refused))
            == f"ConnectError: could not connect; ConnectionRefusedError: {os.strerror(errno.ECONNREFUSED)}")
    assert (transport_error_text(wrapped(httpx2.ConnectError(said), socket.gaierror(-2, said)))
            == "ConnectError: could not connect; the host name could not be resolved")
    tls = ssl.SSLCertVerificationError(1, said)
    tls.reason = "CERTIFICATE_VERIFY_FAILED"
    assert (transport_error_text(wrapped(httpx2.ConnectError(said), tls))
            == "ConnectError: could not connect; TLS error CERTIFICATE_VERIFY_FAILED (SSLCertVerificationError)")
    assert transport_error_text(wrapped(httpx2.RemoteProtocolError(said))) == (
        "RemoteProtocolError: the server's reply broke the HTTP protocol")
    assert transport_error_text(wrapped(ValueError(said))) == "ValueError"
    assert transport_error_text(wrapped(JudgeRequestError("interrupted before the request was sent"))) == (
        "interrupted before the request was sent")


def test_partial_and_escaped_echoes_of_the_key_are_redacted(server, tmp_path, monkeypatch, caplog):
    """A server that echoes the key whole, its first or last 40 characters or a middle slice, plainly,
    repr()-escaped, as UTF-8 bytes, JSON- or URL-encoded, in replies and in error bodies: no 8 characters of the
    key reach the judgments, the cache or the logs."""
    monkeypatch.setenv(KEY_ENV, ECHO_SECRET)
    actions = [("echo_key", code, form, part) for code in (200, 401) for form in KEY_FORMS for part in KEY_PARTS]
    server.queue(*actions)
    questions, a, b = qa(len(actions) // 2)
    cache_path = tmp_path / "cache.jsonl"
    judge = make_judge(server, cache=JudgmentCache(cache_path), max_retries=0)
    with caplog.at_level(logging.DEBUG):
        judgments = judge.judge(questions, a, b, progress=False)
    assert len(server.requests) == len(actions) and not server.script  # every echo was served
    assert all(h.get("Authorization") == f"Bearer {ECHO_SECRET}" for h in server.headers)
    half = len(actions) // 4  # questions answered by two echoing replies, then by two echoing errors
    assert [j.outcome for j in judgments] == ["tie"] * half + ["error"] * half
    cached = cache_path.read_text()
    for text in (cached, caplog.text, repr(judgments), "\n".join(j.error or "" for j in judgments)):
        assert leaks(text, ECHO_SECRET) == []
    assert all(j.error.count("[API key]") == 2 for j in judgments[half:])
    assert cached.count("Your key was ") == cached.count("[API key]") == 2 * half
