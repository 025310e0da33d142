"""What tdpo knows about the Hugging Face Hub without asking it: whether offline mode is on, whether
an error says the hub was not reached (or has no such repository), whether a name can only be a local
path, and the first line of an error's message (how the hub's and the readers' long errors are shown).
Used by the data sources (:mod:`tdpo.data.hub`, :mod:`tdpo.data.sources`, the file and folder readers),
the model-loading errors (:mod:`tdpo.model_errors`) and the checks before training; imports nothing of
tdpo.
"""

from __future__ import annotations

import os

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# Exceptions (by class name, anywhere in the chain) meaning that the Hugging Face Hub was not reached.
_UNREACHABLE = {
    "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError", "ConnectTimeout", "ReadTimeout",
    "TimeoutException", "Timeout", "ConnectionError", "TimeoutError", "gaierror",
}
_NOT_FOUND = {"RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError", "DatasetNotFoundError"}


def hub_offline() -> str | None:
    """The name of the first of ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE``
    set to a true value (``1``, ``true``, ``yes``, ``on``), or None when the hub may be asked."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in ("1", "TRUE", "YES", "ON"):
            return name
    return None


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return seen


def first_line(err: BaseException | str) -> str:
    """The first non-empty line of an error message (the exception's class name if it has none)."""
    text = str(err)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__ if isinstance(err, BaseException) else text


def hub_unreachable(err: BaseException) -> str | None:
    """Why the Hugging Face Hub was not reached, if ``err`` (or an error it was raised from) says it was
    not: the offline variable set, or the innermost network error's first line; None otherwise."""
    chain = _chain(err)
    if any(type(e).__name__ in _NOT_FOUND for e in chain):
        return None
    network = [e for e in chain if type(e).__name__ in _UNREACHABLE]
    if not network:
        return None
    offline = hub_offline()
    if offline is not None or any(type(e).__name__ == "OfflineModeIsEnabled" for e in chain):
        return f"offline mode: {offline or 'HF_HUB_OFFLINE'}=1 is set"
    return first_line(network[-1])


def hub_not_found(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) says the hub has no such repository or revision,
    or refuses access to it."""
    return any(type(e).__name__ in _NOT_FOUND for e in _chain(err))


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a local path, not a Hugging Face Hub id (``name`` or ``owner/name``):
    it exists, is absolute, starts with ``.`` or ``~``, or has a backslash or more than one slash."""
    return (os.path.exists(name) or os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name
            or name.count("/") > 1)
