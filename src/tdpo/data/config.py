"""The data section of a training configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SHAPES = (
    "auto",
    "prompt_chosen_rejected",
    "implicit_prompt",
    "hh",
    "conversational",
    "shp",
    "stack_exchange",
    "tldr",
    "text",
    "prompt_completion",
    "messages",
)
"""Record shapes understood by :mod:`tdpo.data.shapes` (``"auto"`` detects one from the columns)."""

DATA_FORMATS = ("jsonl", "json", "parquet", "csv", "tsv")


@dataclass
class DataConfig:
    """Where the training data comes from and how it is tokenized.

    Used by :func:`tdpo.data.load_preference_data` and :func:`tdpo.data.load_sft_data`.
    """

    source: str = "Anthropic/hh-rlhf"
    """A Hugging Face Hub dataset name (``"Anthropic/hh-rlhf"``, ``"stanfordnlp/SHP"``,
    ``"HuggingFaceH4/stack-exchange-preferences"``, ``"openai/summarize_from_feedback"``,
    ``"stanfordnlp/imdb"`` or any set with prompt/chosen/rejected columns), a short alias (``hh``,
    ``shp``, ``stack_exchange``, ``tldr``, ``imdb``), or a local ``.jsonl``/``.json``/``.parquet``/
    ``.csv``/``.tsv`` file."""

    shape: str = "auto"
    """Record shape; ``"auto"`` detects it from the column names. One of
    ``prompt_chosen_rejected`` (explicit strings or messages), ``implicit_prompt`` (chosen/rejected
    whose shared beginning is the prompt), ``hh`` (``"\\n\\nHuman: ... \\n\\nAssistant: ..."``
    transcripts), ``conversational`` (chosen/rejected message lists, prompt optional), ``shp``
    (``history``/``human_ref_A``/``human_ref_B``/``labels``), ``stack_exchange`` (``question``/
    ``answers`` with ``pm_score``), ``tldr`` (``info``/``summaries``/``choice``), and for SFT ``text``,
    ``prompt_completion`` and ``messages``."""

    subset: str | None = None
    """Hub dataset configuration name (e.g. ``"comparisons"`` for ``openai/summarize_from_feedback``).
    None: the known default of a built-in source, else the dataset's default."""

    data_dir: str | None = None
    """Hub dataset sub-folder, e.g. ``"harmless-base"`` for ``Anthropic/hh-rlhf``."""

    revision: str | None = None
    """Hub dataset revision (branch, tag or commit); pin it for reproducible runs and caches."""

    split: str = "train"
    """Hub split used for training. Ignored for local files (the whole file is read)."""

    test_split: str | None = None
    """Evaluation data: a hub split name (``"test"``) or a local file. None: the known test split of a
    built-in hub source, otherwise ``test_size`` held out from the training rows. ``"none"``: no
    evaluation set at all."""

    test_size: float = 0.05
    """When there is no test split: the fraction (``0 < x < 1``) or number (``x >= 1``) of source
    rows held out for evaluation, drawn deterministically from ``seed``. 0 disables it."""

    seed: int = 0
    """Seed of the held-out split."""

    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping, canonical name -> column in the data, e.g.
    ``{"prompt": "question", "chosen": "response_j", "rejected": "response_k"}``. Canonical names are
    those of the shapes (prompt, chosen, rejected, completion, text, messages, history, ...)."""

    data_format: str | None = None
    """Local file format (``jsonl``, ``json``, ``parquet``, ``csv``, ``tsv``); None: from the suffix."""

    max_length: int = 512
    """Maximum tokens of prompt + response (each chosen and rejected sequence is cut to fit)."""

    max_prompt_length: int | None = 256
    """Prompt tokens kept when prompt + longest response exceeds ``max_length``. None: prompts are
    never cut, and a prompt leaving no room for a response token is an invalid record."""

    prompt_truncation: str = "keep_end"
    """Which end of a long prompt is kept: ``"keep_end"`` (dialogues keep their last turn and the
    ``Assistant:`` cue) or ``"keep_start"`` (documents keep their beginning)."""

    allow_empty_prompt: bool = False
    """Accept records whose explicit prompt is empty (an empty prompt is otherwise invalid)."""

    skip_invalid: bool = False
    """False: the first invalid record stops the load with one error naming the file, line/row and
    field. True: invalid records are skipped, counted per kind, logged and listed in the report."""

    max_records: int | None = None
    """Read only the first N source rows of each split (quick experiments)."""

    min_score_ratio: float = 2.0
    """SHP only: keep a pair only if the preferred answer's score is at least this many times the
    other's (the DPO authors use 2). Dropped pairs are counted in the report as filtered."""

    max_pairs_per_prompt: int | None = None
    """SHP / Stack Exchange: at most this many pairs per prompt (the first ones in the data order)."""

    dialogue_template: str = "\n\nHuman: {prompt}\n\nAssistant:"
    """How single-question sources (SHP, Stack Exchange) are turned into a prompt; responses get a
    leading space, as in HH."""

    group_by_length: bool = False
    """Put records of similar token length in the same batches (less padding) with
    :func:`tdpo.data.length_grouped_sampler`; the order stays shuffled from the run's seed."""

    num_proc: int | None = None
    """Processes for tokenization (``datasets.map``); None: one."""

    cache: bool = True
    """Keep the parsed and tokenized sets on disk and reuse them when the source, the options and the
    tokenizer are unchanged."""

    cache_dir: str | None = None
    """Where the cache lives; None: ``$TDPO_CACHE`` or ``~/.cache/tdpo``, sub-folder ``data``."""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"data.shape must be one of {', '.join(SHAPES)}; got {self.shape!r}")
        if self.data_format is not None and self.data_format not in DATA_FORMATS:
            raise ValueError(f"data.data_format must be one of {', '.join(DATA_FORMATS)}; got {self.data_format!r}")
        if self.max_length < 2:
            raise ValueError(f"data.max_length must be at least 2; got {self.max_length}")
        if self.max_prompt_length is not None and not 0 < self.max_prompt_length < self.max_length:
            raise ValueError(
                f"data.max_prompt_length must be > 0 and < max_length ({self.max_length}) so that a response "
                f"fits; got {self.max_prompt_length}"
            )
        if self.prompt_truncation not in ("keep_end", "keep_start"):
            raise ValueError(f"data.prompt_truncation must be 'keep_end' or 'keep_start'; got {self.prompt_truncation!r}")
        if self.test_size < 0:
            raise ValueError(f"data.test_size must be >= 0; got {self.test_size}")
        if self.test_size >= 1 and self.test_size != int(self.test_size):
            raise ValueError(f"data.test_size must be a fraction below 1 or a whole number; got {self.test_size}")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError(f"data.max_records must be >= 1; got {self.max_records}")
        if self.min_score_ratio < 1:
            raise ValueError(f"data.min_score_ratio must be >= 1; got {self.min_score_ratio}")
        if "{prompt}" not in self.dialogue_template:
            raise ValueError("data.dialogue_template must contain '{prompt}'")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for run summaries and cache keys)."""
        return asdict(self)
