"""The page in a real browser: headless Chromium loads the file ``tdpo inspect`` wrote for two tiny
policies, and what it draws is checked against the data and against float64 computations made here.

Without Chromium the test is skipped with the reason, except under CI (``CI`` set, as ``.ci/run`` sets
it after installing Debian's ``chromium``), where it fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from tdpo.commands.inspect import main

pytestmark = pytest.mark.slow


def chromium() -> str:
    """The Chromium binary; skip (fail under CI) without one."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("Chromium is not installed, and CI is set: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); the browser test needs it")


def browse(page, *flags: str, fragment: str = "") -> str:
    """Run headless Chromium on ``page`` (a file) with ``flags``; return its standard output."""
    command = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               f"--user-data-dir={page.parent / 'chromium-profile'}", *flags, page.resolve().as_uri() + fragment]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def cell_text(dom: str, cls: str) -> str:
    return html.unescape(re.search(rf'<td class="{cls}">(.*?)</td>', dom).group(1))


def test_the_page_draws_every_token_and_the_hover_numbers_are_exact(tiny_setup, float64_tokens, tmp_path):
    chromium()  # skip (or fail under CI) before any work
    s = tiny_setup
    page = tmp_path / "view.html"
    assert main(["--model", str(s.paths["dpo"]), "--name", "DPO", "--model", str(s.paths["tdpo2"]), "--name", "TDPO2",
                 "--reference", str(s.paths["sft"]), "--data", str(s.data), "--split", "all", "--set",
                 "data.cache=false", "--beta", "0.5", "--output", str(page), "--no-progress"]) == 0
    data = json.loads(re.search(r'id="tdpo-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.S).group(1))
    lengths = [sum(len(ids) for ids in s.pair_ids(i)[1:]) for i in range(len(s.records))]
    expected_count = 2 * sum(lengths)  # two policies, every chosen and rejected token of every pair

    # the third pair's rejected response under TDPO2: the token number in data order, and its position
    i, m, r, p = 2, 1, 1, 1
    number = 2 * sum(lengths[:i]) + lengths[i] + len(s.pair_ids(i)[1]) + p
    dom = browse(page, "--dump-dom", "--virtual-time-budget=3000",
                 fragment=f"#sort=tdpo_margin&model=1&order=asc&token={number}")
    spans = re.findall(r'<span class="tok[ "]', dom)
    assert len(spans) == expected_count == sum(len(x["tokens"]) for it in data["items"] for c in it["cells"]
                                               for x in c["responses"])
    assert f'data-tokens="{expected_count}"' in dom

    detail = re.search(r'<div id="detail" ([^>]*)>(.*?)</div></div>', dom, re.S)
    assert detail and "hidden" not in detail.group(1)
    attributes = dict(re.findall(r'data-(\w+)="([^"]*)"', detail.group(1)))
    assert [int(attributes[k]) for k in ("item", "model", "resp", "pos", "n")] == [i, m, r, p, number]
    prompt, _, rejected = s.pair_ids(i)
    want = float64_tokens(s.paths["tdpo2"], s.paths["sft"], prompt, rejected)[p]
    body = detail.group(2)
    assert int(attributes["id"]) == want["id"] == rejected[p]
    for cls, value in (("v-lp", want["lp"]), ("v-lr", want["lr"]), ("v-d", want["lp"] - want["lr"]),
                       ("v-kl", want["kl"])):
        assert float(cell_text(body, cls)) == pytest.approx(value, abs=1.5e-4), cls
    for cls, key in (("top-policy", "pt"), ("top-reference", "rt")):
        table = re.search(rf'<table class="top {cls}">(.*?)</table>', body, re.S).group(1)
        rows = re.findall(r'<tr[^>]*data-id="(\d+)"[^>]*><td class="tt">.*?</td><td class="tp">([^<]*)</td>', table)
        assert [int(t) for t, _ in rows] == [t for t, _ in want[key]]
        assert [float(v) for _, v in rows] == pytest.approx([v for _, v in want[key]], abs=1.5e-4)

    # sorted on load by TDPO2's TDPO margin, smallest first: beta((D_w - D_l) + (Delta_w - Delta_l)) by hand
    def margin(k):
        prompt, chosen, rejected = s.pair_ids(k)
        sums = [(sum(t["lp"] - t["lr"] for t in e), sum(t["kl"] for t in e)) for e in
                (float64_tokens(s.paths["tdpo2"], s.paths["sft"], prompt, ids) for ids in (chosen, rejected))]
        return 0.5 * ((sums[0][0] - sums[1][0]) - (sums[1][1] - sums[0][1]))

    order = [int(k) for k in re.findall(r'<section class="item" data-i="(\d+)"', dom)]
    assert order == sorted(range(len(s.records)), key=margin)

    shot = tmp_path / "view.png"
    browse(page, f"--screenshot={shot}", "--window-size=1400,900", "--virtual-time-budget=3000", fragment="#token=3")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
