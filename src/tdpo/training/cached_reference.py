"""What both reference caches share: the interface a micro-batch's loss uses, and their one load-or-compute.

Two caches replace the reference model's forward pass during training, each computed once before it:
per-sequence log-probs for the DPO family (:class:`tdpo.training.reference_cache.ReferenceLogps`) and
final hidden states for TDPO (:class:`tdpo.training.reference_states.ReferenceStates`). Both are a
:class:`ReferenceCache`: :meth:`ReferenceCache.for_batch` gives a micro-batch its
:class:`CachedReference`, and :func:`tdpo.training.batch.batch_loss` uses it without asking which cache
it holds.

Both are stored the same way: one folder per split under a root, named by :func:`cache_key` (a hash of
everything the numbers depend on), holding safetensors and an ``info.json`` with the SHA-256 of the
tensors (:func:`save_checked_tensors`, :func:`load_checked_tensors`: a table that changed or was damaged
since it was written is computed again, with a warning); and both are loaded or computed by
:func:`load_or_compute`.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from torch import Tensor

from tdpo.files import atomic_folder
from tdpo.hashing import tensors_sha256

if TYPE_CHECKING:
    from tdpo.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedReference:
    """What a reference cache gives one preference micro-batch of ``B`` pairs (``2B`` rows: the
    chosen rows, then the rejected, as the collator concatenates them).

    Attributes:
        logps: ``[2B]`` the reference's per-sequence log-probs: they replace the whole reference pass
            (the loss takes them); None from a cache of hidden states.
        hidden: ``[2B, T, H]`` the reference's final hidden states, zeros on padding: they replace the
            reference's forward pass (its head still projects them); None from a cache of log-probs.
    """

    logps: Tensor | None = None
    hidden: Tensor | None = None


class ReferenceCache(abc.ABC):
    """A split's cached reference: one entry per pair of the split, looked up by the pairs' ``index``."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of pairs cached."""

    @abc.abstractmethod
    def for_batch(self, index: Tensor, attention_mask: Tensor) -> CachedReference:
        """The cached reference of the pairs ``index`` ``[B]`` (their dataset rows), for a right-padded
        micro-batch whose ``attention_mask`` is ``[2B, T]``.

        Raises:
            IndexError: a pair index outside the cache.
        """


def _dataset_fingerprint(dataset: Any) -> str:
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint:
        return str(fingerprint)
    digest = hashlib.sha256()
    for i in range(len(dataset)):
        digest.update(json.dumps(dataset[i], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _model_identity(name_or_path: str) -> dict[str, Any]:
    identity: dict[str, Any] = {"name": name_or_path}
    path = Path(name_or_path)
    if path.is_dir():
        identity["files"] = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()
        )
    return identity


def cache_key(cfg: TrainConfig, split: str, dataset: Any) -> str:
    """A hash of everything the cached numbers depend on: the reference model (or the policy's
    initial weights with LoRA), its dtype, the token-statistics path, averaging, and the data."""
    reference = cfg.reference.name_or_path or cfg.model.name_or_path
    blob = {
        "reference": _model_identity(reference),
        "revision": cfg.model.revision if cfg.reference.name_or_path is None else None,
        "dtype": cfg.reference.dtype or cfg.model.dtype,
        "token_stats": cfg.loss.token_stats,
        "average": cfg.loss.average_log_prob,
        "split": split,
        "data": _dataset_fingerprint(dataset),
        "n": len(dataset),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def save_checked_tensors(tensors: dict[str, Tensor], folder: Path, tensors_file: str, info_file: str,
                         info: dict[str, Any]) -> None:
    """Write ``tensors`` (safetensors) and ``info`` plus their ``sha256``
    (:func:`tdpo.hashing.tensors_sha256`, JSON) into ``folder`` atomically (a temporary folder, then
    renamed into place, replacing what was there)."""
    from safetensors.torch import save_file

    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    with atomic_folder(folder) as tmp:
        save_file(tensors, str(tmp / tensors_file))
        (tmp / info_file).write_text(json.dumps({**info, "sha256": tensors_sha256(tensors)}, indent=2,
                                                sort_keys=True))


def load_checked_tensors(file: Path, info_file: Path, names: Sequence[str], what: str, *,
                         warn: bool = True) -> dict[str, Tensor] | None:
    """The tensors ``names`` of the cache ``file`` if they match the ``sha256`` that ``info_file`` holds;
    None when there is no such cache, or (with a warning naming the folder when ``warn``) when it is
    unreadable, lacks a tensor or its checksum, or its tensors changed since they were written: the
    caller computes them again and writes them anew."""
    from safetensors.torch import load_file

    if not file.is_file() or not info_file.is_file():
        return None
    try:
        expected = json.loads(info_file.read_text()).get("sha256")
        tensors = load_file(str(file))
    except Exception as err:  # truncated, not safetensors, not JSON: a cache, so compute it again
        problem = f"cannot be read ({type(err).__name__}: {err})"
    else:
        missing = [name for name in names if name not in tensors]
        if missing:
            problem = f"has no tensor {missing[0]!r}"
        elif expected is None:
            problem = f"has no checksum in {info_file.name} (written by an older tdpo)"
        elif tensors_sha256({name: tensors[name] for name in names}) != expected:
            problem = f"does not match the SHA-256 in {info_file.name}: it changed or was damaged since it was written"
        else:
            return tensors
    if warn:
        logger.warning("the cached %s in %s %s; computing them again", what, file.parent, problem)
    return None


Cache = TypeVar("Cache", bound=ReferenceCache)


def load_or_compute(cfg: TrainConfig, accelerator: Any, root: Path, train: Sequence[Any] | None,
                    eval: Sequence[Any] | None, *, load: Callable[[Path], Cache | None],
                    compute: Callable[[str, Sequence[Any], Path], Cache], what: str,
                    log: logging.Logger = logger) -> tuple[Cache | None, Cache | None]:
    """The cached reference of the training and eval splits, each loaded from its folder or computed.

    Args:
        cfg: the :class:`tdpo.config.TrainConfig` (the folders' :func:`cache_key`).
        accelerator: the run's accelerator (the main process logs).
        root: the folder holding one folder per cached split.
        train, eval: the tokenized pairs of each split; an empty or None split gets None.
        load: ``folder -> cache`` read back, or None when there is none or it does not check out.
        compute: ``(split, dataset, folder) -> cache`` computed (and written into ``folder``), used when
            ``load`` gives nothing or a cache of another number of pairs.
        what: what is cached, for the log; log: the logger to say it with.

    Returns:
        ``(train, eval)``.
    """
    caches: list[Cache | None] = []
    for split, dataset in (("train", train), ("eval", eval)):
        if dataset is None or len(dataset) == 0:
            caches.append(None)
            continue
        folder = root / cache_key(cfg, split, dataset)
        cache = load(folder)
        if cache is not None and len(cache) == len(dataset):
            if accelerator.is_main_process:
                log.info("using cached %s from %s", what, folder)
            caches.append(cache)
        else:
            caches.append(compute(split, dataset, folder))
    return caches[0], caches[1]
