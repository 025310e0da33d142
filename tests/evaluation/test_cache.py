"""The JSONL judgment cache."""

from __future__ import annotations

import threading

import pytest

from tdpo.evaluation.cache import JudgmentCache, judgment_key


def test_key_depends_on_every_field():
    base = {"model": "m", "messages": [{"role": "user", "content": "q A1 B1"}], "temperature": 0.0}
    assert judgment_key(base) == judgment_key(dict(reversed(list(base.items()))))
    variants = [dict(base, model="m2"), dict(base, temperature=0.5),
                dict(base, messages=[{"role": "user", "content": "q B1 A1"}])]
    keys = {judgment_key(v) for v in variants} | {judgment_key(base)}
    assert len(keys) == 4


def test_roundtrip_and_resume(tmp_path):
    path = tmp_path / "sub" / "cache.jsonl"
    cache = JudgmentCache(path)
    cache.put("k1", "A", "Verdict: A", "judge")
    cache.put("k2", None, "???", "judge")
    again = JudgmentCache(path)
    assert len(again) == 2
    assert again.get("k1").verdict == "A" and again.get("k2").verdict is None
    assert again.get("k3") is None
    with pytest.raises(ValueError):
        cache.put("k4", "C", "", "judge")


def test_truncated_line_is_skipped_with_warning(tmp_path):
    path = tmp_path / "cache.jsonl"
    JudgmentCache(path).put("k1", "tie", "Verdict: tie", "judge")
    with path.open("a") as handle:
        handle.write('{"key": "k2", "verdict": "A", "rep')  # a run killed mid-write
    with pytest.warns(UserWarning, match="line 2"):
        cache = JudgmentCache(path)
    assert len(cache) == 1 and "k1" in cache


def test_concurrent_writes_are_whole_lines(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = JudgmentCache(path)

    def writer(start):
        for i in range(start, start + 50):
            cache.put(f"k{i}", "B", "x" * 500, "judge")

    threads = [threading.Thread(target=writer, args=(i * 50,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(JudgmentCache(path)) == 200


def test_record_after_a_torn_line_survives(tmp_path):
    path = tmp_path / "cache.jsonl"
    JudgmentCache(path).put("k1", "A", "Verdict: A", "judge")
    with path.open("a") as handle:
        handle.write('{"key": "k2", "verdict": "B", "re')  # killed mid-write: no newline at the end
    with pytest.warns(UserWarning, match="line 2"):
        resumed = JudgmentCache(path)
    resumed.put("k3", "tie", "Verdict: tie", "judge")  # the resumed run's first judgment
    with pytest.warns(UserWarning, match="line 2"):
        again = JudgmentCache(path)
    assert "k3" in again and again.get("k3").verdict == "tie"
    assert len(again) == 2
