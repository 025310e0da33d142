"""The data section of a training configuration: where the data comes from and how it is tokenized
(read by :mod:`tdpo.data`)."""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from tdpo.config.base import Bool, Float, Int, section

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
"""Local file formats (``data.data_format``)."""


@section
class DataConfig:
    """Where the training data comes from and how it is tokenized.

    Used by :func:`tdpo.data.load_preference_data` and :func:`tdpo.data.load_sft_data`.
    """

    source: str = "Anthropic/hh-rlhf"
    """A Hugging Face Hub dataset name (``"Anthropic/hh-rlhf"``, ``"stanfordnlp/SHP"``,
    ``"HuggingFaceH4/stack-exchange-preferences"``, ``"openai/summarize_from_feedback"``,
    ``"stanfordnlp/imdb"`` or any set with prompt/chosen/rejected columns), a short alias (``hh``,
    ``shp``, ``stack_exchange``, ``tldr``, ``imdb``), a local ``.jsonl``/``.json``/``.parquet``/
    ``.csv``/``.tsv`` file, or a local folder: a dataset saved with ``save_to_disk`` or a folder of data
    files that ``datasets.load_dataset`` reads (named splits used as a hub dataset's)."""

    shape: Literal[SHAPES] = "auto"  # type: ignore[valid-type]
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
    """Hub split (or split of a local folder) used for training. Ignored for local files and a saved
    ``Dataset`` (all of it is read)."""

    test_split: str | None = None
    """Evaluation data: a split name (``"test"``) of a hub dataset or local folder, or a local file. None: the known test split of a
    built-in hub source, otherwise ``test_size`` held out from the training rows. ``"none"``: no
    evaluation set at all."""

    test_size: Float = Field(0.05, ge=0)
    """When there is no test split: the fraction (``0 < x < 1``) or number (``x >= 1``) of source
    rows held out for evaluation, drawn deterministically from ``seed``. 0 disables it."""

    seed: Int = 0
    """Seed of the held-out split."""

    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping, canonical name -> column in the data, e.g.
    ``{"prompt": "question", "chosen": "response_j", "rejected": "response_k"}``. Canonical names are
    those of the shapes (prompt, chosen, rejected, completion, text, messages, history, ...)."""

    data_format: Literal[DATA_FORMATS] | None = None  # type: ignore[valid-type]
    """Local file format (``jsonl``, ``json``, ``parquet``, ``csv``, ``tsv``); None: from the suffix."""

    max_length: Int = Field(512, ge=2)
    """Maximum tokens of prompt + response (each chosen and rejected sequence is cut to fit)."""

    max_prompt_length: Int | None = Field(256, gt=0)
    """Prompt tokens kept when prompt + longest response exceeds ``max_length``. None: prompts are
    never cut, and a prompt leaving no room for a response token is an invalid record."""

    prompt_truncation: Literal["keep_end", "keep_start"] = "keep_end"
    """Which end of a long prompt is kept: ``"keep_end"`` (dialogues keep their last turn and the
    ``Assistant:`` cue) or ``"keep_start"`` (documents keep their beginning)."""

    allow_empty_prompt: Bool = False
    """Accept records whose explicit prompt is empty (an empty prompt is otherwise invalid)."""

    skip_invalid: Bool = False
    """False: the first invalid record stops the load with one error naming the file, line/row and
    field. True: invalid records are skipped, counted per kind, logged and listed in the report."""

    max_records: Int | None = Field(None, ge=1)
    """Read only the first N source rows of each split (quick experiments)."""

    min_score_ratio: Float = Field(2.0, ge=1)
    """SHP only: keep a pair only if the preferred answer's score is at least this many times the
    other's (the DPO authors use 2). Dropped pairs are counted in the report as filtered."""

    max_pairs_per_prompt: Int | None = None
    """SHP / Stack Exchange: at most this many pairs per prompt (the first ones in the data order)."""

    dialogue_template: str = "\n\nHuman: {prompt}\n\nAssistant:"
    """How single-question sources (SHP, Stack Exchange) are turned into a prompt; responses get a
    leading space, as in HH."""

    padding_free: Bool = True
    """Pack each micro-batch's rows end to end into as few rows as fit the longest one, with
    position ids restarting per sequence so that attention does not cross sequences: no compute on
    padding, the same losses and gradients (up to float rounding). Checked once per run on the
    model; a model that does not keep packed sequences apart trains padded, with a warning."""

    group_by_length: Bool = False
    """Put records of similar token length in the same batches (less padding): the trainer's batch
    plan groups them by length; the order stays shuffled from the run's seed."""

    num_proc: Int | None = None
    """Processes for tokenization (``datasets.map``); None: one."""

    cache: Bool = True
    """Keep the parsed and tokenized sets on disk and reuse them when the source, the options and the
    tokenizer are unchanged."""

    cache_dir: str | None = None
    """Where the cache lives; None: ``$TDPO_CACHE`` or ``~/.cache/tdpo``, sub-folder ``data``."""

    @field_validator("test_size")
    @classmethod
    def _whole_if_a_count(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError(f"must be a fraction below 1 or a whole number, got {value}")
        return value

    @field_validator("max_prompt_length")
    @classmethod
    def _room_for_a_response(cls, value: int | None, info: ValidationInfo) -> int | None:
        max_length = info.data.get("max_length")
        if value is not None and max_length is not None and value >= max_length:
            raise ValueError(f"must be below max_length ({max_length}) so that a response fits, got {value}")
        return value

    @field_validator("dialogue_template")
    @classmethod
    def _has_the_prompt(cls, value: str) -> str:
        if "{prompt}" not in value:
            raise ValueError(f"must contain '{{prompt}}', got {value!r}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for run summaries and cache keys)."""
        return asdict(self)
