"""The chat judge's HTTP side: an ``openai.OpenAI`` client for one OpenAI-compatible endpoint.

The openai client (the optional extra ``pip install 'tdpo[judge]'``) sends the requests and does the
retries: a time-out, a connection error or an HTTP 408, 409, 429 or 5xx is retried up to ``max_retries``
times, waiting with its exponential back-off or as long as a ``Retry-After`` header asks. This module adds
what tdpo needs around it:

* the time-out bounds the **whole reply** (a server trickling its body out byte by byte times out too), not
  only each socket read;
* every HTTP request is counted (:attr:`JudgeClient.requests_sent`, retries included);
* a reply that is not a chat-completions body is asked for again, up to ``max_retries`` times;
* after :meth:`JudgeClient.stop` no further request (or retry) is sent;
* failures become a :class:`~tdpo.evaluation.judgment.JudgeRequestError` naming the endpoint, the status code
  and the server's explanation (cut to 300 characters), redacted (every echo of 8 or more characters of the
  API key, plain or escaped, replaced by ``[API key]``: :func:`~tdpo.evaluation.api_key.redact_key`) before
  anything is cut. A failure to connect or to send is described by the exception's type and a text of
  tdpo's own (:func:`transport_error_text`), never by the exception's message, which may quote the request's
  headers (h11 refuses a header with ``Illegal header value b'Bearer <the key>'``).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tdpo.evaluation.judgment import JudgeRequestError

try:
    import httpx2
    import openai
except ImportError as err:  # the judge extra is not installed
    raise ImportError(f"the chat-completions judge needs the openai client ({err}); install it with "
                      "pip install 'tdpo[judge]'") from err

logger = logging.getLogger(__name__)

MAX_ERROR_DETAIL = 300
"""Characters of an HTTP error body kept in an error message (after redaction)."""
RETRIED_STATUSES = (408, 409, 429)
"""HTTP statuses the openai client retries, besides every 5xx."""


def reply_text(completion: Any) -> str | None:
    """The text of a chat completion's first choice, or ``None`` when ``completion`` is not a
    chat-completions body (the openai client hands back the raw text of a non-JSON reply)."""
    try:
        content = completion.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _retried(status: int) -> bool:
    return status in RETRIED_STATUSES or status >= 500


class _DeadlineStream(httpx2.SyncByteStream):
    """A response body that raises ``httpx2.ReadTimeout`` once the whole reply has taken too long."""

    def __init__(self, stream: httpx2.SyncByteStream, deadline: float, timeout: float,
                 request: httpx2.Request) -> None:
        self._stream, self._deadline, self._timeout, self._request = stream, deadline, timeout, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise httpx2.ReadTimeout(f"the reply took longer than {self._timeout:g} s", request=self._request)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class JudgeClient:
    """Sends chat-completions requests to ``{base_url}/chat/completions`` through the openai client.

    Args:
        base_url: the API's base URL.
        api_key: sent as ``Authorization: Bearer ...``; empty or None: no ``Authorization`` header.
        timeout: seconds for a whole reply, per try.
        max_retries: retries after the first try.
        redact: applied to every error message (replaces the API key).
    """

    def __init__(self, base_url: str, api_key: str | None, timeout: float, max_retries: int,
                 redact: Callable[[str], str]) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout = timeout
        self.max_retries = max_retries
        self.redact = redact
        self.requests_sent = 0
        """HTTP requests sent (retries included)."""
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()  # per thread: tries of the current call, deadline of the current try
        http_client = openai.DefaultHttpxClient(
            event_hooks={"request": [self._on_request], "response": [self._on_response]})
        # no key: send no Authorization header (and read no key from OPENAI_API_KEY or OPENAI_ADMIN_KEY)
        self._headers = {} if api_key else {"Authorization": openai.omit}
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "", admin_api_key="", timeout=timeout,
                                     max_retries=max_retries, http_client=http_client)

    def stop(self) -> None:
        """Send no further request: calls in progress fail with "interrupted" at their next try."""
        self._stopped.set()

    def resume(self) -> None:
        """Undo :meth:`stop`."""
        self._stopped.clear()

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def _on_request(self, request: httpx2.Request) -> None:
        if self._stopped.is_set():
            raise JudgeRequestError("interrupted before the request was sent")
        with self._lock:
            self.requests_sent += 1
        self._local.tries = getattr(self._local, "tries", 0) + 1
        self._local.deadline = time.monotonic() + self.timeout

    def _on_response(self, response: httpx2.Response) -> None:
        if _retried(response.status_code):
            logger.warning("judge request answered HTTP %d (retried while retries are left)", response.status_code)
        response.stream = _DeadlineStream(response.stream, self._local.deadline, self.timeout, response.request)

    def complete(self, payload: dict[str, Any]) -> str:
        """Send one chat-completions request (``payload``: the ``create`` arguments); returns the reply text.

        Raises:
            JudgeRequestError: a non-retryable HTTP error, a time-out or connection error after the client's
                retries, a reply that was not a chat-completions body ``max_retries + 1`` times, or a stop.
        """
        self._local.tries = 0
        for _ in range(self.max_retries + 1):
            try:
                completion = self._client.chat.completions.create(**payload, extra_headers=self._headers)
            except openai.OpenAIError as err:
                status = err.status_code if isinstance(err, openai.APIStatusError) else None
                raise JudgeRequestError(self.redact(self.describe(err)), status=status) from None
            text = reply_text(completion)
            if text is not None:
                return text
            logger.warning("judge reply is not a chat-completions body; asking again")
        raise JudgeRequestError(f"{self.url}: garbled reply (not a chat-completions body) "
                                f"(gave up after {self._local.tries} tries)")

    def describe(self, err: Exception) -> str:
        """What went wrong, from an openai exception (not yet redacted)."""
        tries = getattr(self._local, "tries", 1)
        gave_up = f" (gave up after {tries} tries)"
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            # redact the whole body before cutting it: a cut key would no longer match the redaction
            detail = self.redact(err.response.text).strip()[:MAX_ERROR_DETAIL]
            if _retried(status):  # the server's reason too: a server may answer a refused field with a 500
                return f"{self.url}: HTTP {status}{gave_up}" + (f": {detail}" if detail else "")
            return (f"{self.url} answered HTTP {status} ({err.response.reason_phrase})"
                    + (f": {detail}" if detail else ""))
        if isinstance(err, openai.APITimeoutError):
            return f"{self.url}: timed out after {self.timeout:g} s{gave_up}"
        if isinstance(err, openai.APIConnectionError):
            return f"{self.url}: connection error: {transport_error_text(err)}{gave_up}"
        return f"{self.url}: {type(err).__name__} (its message is not shown: it may quote the request's headers)"


_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (httpx2.LocalProtocolError, "the HTTP library refused to send the request (an illegal character in a header?)"),
    (httpx2.RemoteProtocolError, "the server's reply broke the HTTP protocol"),
    (httpx2.UnsupportedProtocol, "the URL's scheme is not supported"),
    (httpx2.ProxyError, "the proxy refused the request"),
    (httpx2.ConnectError, "could not connect"),
    (httpx2.WriteError, "the connection failed while the request was sent"),
    (httpx2.ReadError, "the connection failed while the reply was read"),
    (httpx2.TimeoutException, "timed out"),
    (httpx2.TransportError, "the connection failed"),
)
"""What each kind of transport failure means, in tdpo's words (the first class that matches is used)."""


def transport_error_text(err: BaseException) -> str:
    """A description of a failure to connect, send or receive that copies no text from the exceptions.

    Walks ``err``'s chain of causes and gives the type of the HTTP library's exception with tdpo's own
    description of it, and for an operating-system error its errno's standard text (e.g. ``Connection
    refused``), for a TLS error OpenSSL's reason code, for a failed name look-up that the host name could not
    be resolved. A :class:`~tdpo.evaluation.judgment.JudgeRequestError` raised by this module (a stop) is
    given as it is: its text is tdpo's.
    """
    chain: list[BaseException] = []
    seen = err
    while seen is not None and seen not in chain and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for link in chain:
        if isinstance(link, JudgeRequestError):
            return str(link)
    parts = []
    transport = next((link for link in chain if isinstance(link, httpx2.TransportError)), None)
    if transport is not None:
        meaning = next(text for kind, text in _TRANSPORT_ERRORS if isinstance(transport, kind))
        parts.append(f"{type(transport).__name__}: {meaning}")
    os_error = next((link for link in chain if isinstance(link, OSError)), None)
    if isinstance(os_error, ssl.SSLError):
        reason = getattr(os_error, "reason", None)  # OpenSSL's code, e.g. CERTIFICATE_VERIFY_FAILED
        parts.append(f"TLS error {reason if isinstance(reason, str) and reason.isidentifier() else ''}".strip()
                     + f" ({type(os_error).__name__})")
    elif isinstance(os_error, socket.gaierror):
        parts.append("the host name could not be resolved")
    elif os_error is not None and isinstance(os_error.errno, int) and os_error.errno > 0:
        parts.append(f"{type(os_error).__name__}: {os.strerror(os_error.errno)}")
    elif os_error is not None:
        parts.append(type(os_error).__name__)
    if not parts:
        parts.append(type(chain[-1]).__name__)
    return "; ".join(parts)
