"""A small fake OpenAI-compatible chat-completions server on 127.0.0.1, for the judge tests.

It serves ``POST /v1/chat/completions`` from a background thread. By default it plays a judge that prefers
the assistant whose conversation contains the word ``GOOD`` (a tie if both or neither do). A script of
misbehaviours can be queued, consumed one per request in arrival order: HTTP errors (with an optional
``Retry-After``), slow replies, garbled bodies and fixed reply texts. Everything stays on loopback; each
request sleeps at most a few seconds, so the server always stops.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

_SECTION = re.compile(r"\[Conversation with assistant (A|B)\]\n(.*?)\n\[End of conversation with assistant \1\]",
                      re.DOTALL)


def prefer_good(user_message: str) -> str:
    """The default judge: prefers the conversation that contains ``GOOD``."""
    sections = dict(_SECTION.findall(user_message))
    good = [name for name in ("A", "B") if "GOOD" in sections.get(name, "")]
    if len(good) == 1:
        return f"Assistant {good[0]} answers the question better.\nVerdict: {good[0]}"
    return "Both assistants are about as helpful.\nVerdict: tie"


_MTB_SECTION = re.compile(r"Start of Assistant (A|B)'s (?:Answer|Conversation with User)(.*?)End of Assistant \1's",
                          re.DOTALL)
_MTB_SINGLE = re.compile(r"Start of Assistant(?:'s Answer| A's Conversation with User)(.*?)End of Assistant", re.DOTALL)


def mtbench_judge(body: dict) -> str:
    """A judge for MT-bench's prompts: grades 9 an answer containing ``GOOD`` and 3 any other; of two answers
    prefers the one containing ``GOOD`` (``C``, a tie, if both or neither do). With a ``response_format`` in
    the request it answers JSON of the schema's shape, else MT-bench's ``[[rating]]`` or ``[[A]]`` text."""
    text = "\n".join(m["content"] for m in body["messages"])
    constrained = "response_format" in body
    if "[[rating]]" in text:
        answer = _MTB_SINGLE.search(text)
        rating = 9 if answer and "GOOD" in answer.group(1) else 3
        if constrained:
            return json.dumps({"explanation": "graded", "rating": rating})
        return f"The answer is graded.\nRating: [[{rating}]]"
    sections = dict(_MTB_SECTION.findall(text))
    good = [name for name in ("A", "B") if "GOOD" in sections.get(name, "")]
    verdict = good[0] if len(good) == 1 else "C"
    if constrained:
        return json.dumps({"explanation": "compared", "verdict": verdict})
    return f"Compared.\n[[{verdict}]]"


KEY_PARTS = {
    "whole": lambda key: key,
    "first40": lambda key: key[:40],
    "last40": lambda key: key[-40:],
    "middle": lambda key: key[len(key) // 2 - 10:len(key) // 2 + 10],
}
"""What part of the key an ``echo_key`` action quotes."""
KEY_FORMS = {
    "plain": lambda text: text,
    "repr": repr,
    "bytes": lambda text: repr(text.encode("utf-8")),
    "json": json.dumps,
    "url": lambda text: quote(text, safe=""),
}
"""How an ``echo_key`` action writes what it quotes."""


class FakeChatServer:
    """The server; use as a context manager. ``url`` is the base URL to give the judge (``.../v1``)."""

    def __init__(self, judge=prefer_good, delay: float = 0.0, body_judge=None,
                 reject_response_format: bool = False) -> None:
        self.judge = judge
        self.body_judge = body_judge
        """If set, called with the whole request body for the reply text (instead of ``judge``)."""
        self.reject_response_format = reject_response_format
        """Answer every request carrying ``response_format`` with an HTTP 400 naming it (as servers that do
        not support it do)."""
        self.delay = delay
        self.script: deque[tuple] = deque()
        self.requests: list[dict] = []
        self.headers: list = []  # each request's headers (an email.message.Message: names are case-insensitive)
        self.times: list[float] = []  # time.monotonic() at which each request arrived
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def queue(self, *actions: tuple) -> None:
        """Queue actions for the next requests: ``("status", code, headers)``, ``("slow", seconds)``,
        ``("garbled",)``, ``("reply", text)``, ``("trickle", seconds)`` (headers at once, then the body one
        byte at a time over about that long), ``("echo_auth", code)`` (a careless server that quotes the
        request's ``Authorization`` header back: in an error body, or for code 200 in a reply ending
        ``Verdict: A``) or ``("echo_key", code, form, part)``, which quotes the key of that header the same
        way, or only ``part`` of it (:data:`KEY_PARTS`), written in ``form`` (:data:`KEY_FORMS`)."""
        self.script.extend(actions)

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (time-out test)

            def _trickle(self, body: bytes, seconds: float) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.flush()
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(seconds / len(body))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(self.headers)
                    server.times.append(time.monotonic())
                    action = server.script.popleft() if server.script else ("ok",)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if self.path != "/v1/chat/completions":
                        self._send(404, b'{"error": "not found"}')
                        return
                    if server.delay:
                        time.sleep(server.delay)
                    kind = action[0]
                    if server.reject_response_format and "response_format" in body:
                        message = {"error": {"message": "Unrecognized request argument supplied: response_format",
                                             "type": "invalid_request_error", "param": "response_format"}}
                        self._send(400, json.dumps(message).encode(), {"Content-Type": "application/json"})
                        return
                    if kind == "status":
                        headers = action[2] if len(action) > 2 else {}
                        self._send(action[1], b'{"error": {"message": "scripted failure"}}', headers)
                        return
                    if kind == "echo_auth":
                        auth = self.headers.get("Authorization", "")
                        if action[1] != 200:
                            body = json.dumps({"error": {"message": f"bad credentials: {auth}"}}).encode()
                            self._send(action[1], body, {"Content-Type": "application/json"})
                            return
                        kind, action = "reply", ("reply", f"You sent {auth}.\nVerdict: A")
                    if kind == "echo_key":
                        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                        echo = KEY_FORMS[action[2]](KEY_PARTS[action[3]](key))
                        if action[1] != 200:
                            body = json.dumps({"error": {"message": f"unknown key {echo}"}}).encode()
                            self._send(action[1], body, {"Content-Type": "application/json"})
                            return
                        kind, action = "reply", ("reply", f"Your key was {echo}.\nVerdict: A")
                    if kind == "garbled":
                        self._send(200, b"<html>this is not json", {"Content-Type": "text/html"})
                        return
                    if kind == "slow":
                        time.sleep(action[1])
                    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
                    if kind == "reply":
                        text = action[1]
                    else:
                        text = server.body_judge(body) if server.body_judge else server.judge(user)
                    reply = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                    }
                    body = json.dumps(reply).encode()
                    if kind == "trickle":
                        self._trickle(body, action[1])
                        return
                    self._send(200, body, {"Content-Type": "application/json"})
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve the fake judge on loopback until interrupted (for trying ``tdpo judge`` by hand)."""
    import argparse

    parser = argparse.ArgumentParser(description="A fake chat-completions judge on 127.0.0.1 that prefers the "
                                     "answer containing GOOD. Prints its base URL, then serves until Ctrl-C.")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each reply takes")
    parser.add_argument("--queue", action="append", default=[], metavar="ACTION",
                        help="script the first requests: 'status:CODE', 'slow:SECONDS', 'garbled' or 'reply:TEXT' "
                        "(repeatable, used in order)")
    args = parser.parse_args(argv)
    with FakeChatServer(delay=args.delay) as server:
        for spec in args.queue:
            kind, _, value = spec.partition(":")
            if kind == "status":
                server.queue(("status", int(value), {}))
            elif kind == "slow":
                server.queue(("slow", float(value)))
            elif kind in ("garbled", "reply"):
                server.queue((kind,) if kind == "garbled" else (kind, value))
            else:
                parser.error(f"unknown action {spec!r}")
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
