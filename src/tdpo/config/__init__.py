"""The training configuration: typed sections, YAML files and dotted command-line overrides.

A run is described by one :class:`TrainConfig`, a tree of sections declared as pydantic dataclasses
(:mod:`tdpo.config.sections`). The string under each field is its documentation (``tdpo train
--options`` prints it). A config is read from a YAML file whose nesting mirrors the tree, then
changed by ``key=value`` overrides with dotted keys::

    cfg = load_config("configs/tdpo2.yaml", ["loss.alpha=0.5", "optim.lr=1e-6"])

Values of overrides are parsed as YAML scalars (``1e-6``, ``true``, ``null``, ``[q_proj, v_proj]``).
Only ``true`` and ``false`` are booleans: YAML 1.1's ``yes``/``no``/``on``/``off`` stay strings, so that
a boolean option given one of them is refused rather than silently read (see :func:`yaml_load`).
Pydantic checks keys, types and ranges; :func:`validate` checks across fields. Every error is a
:class:`ConfigError` naming the key (and the file). The resolved config is written into the run
folder as ``config.yaml`` (see :func:`save_config`).

Modules: ``sections`` (the schema), ``data`` (its data section), ``section`` (what a section is made
of), ``parsing`` (YAML and overrides), ``loading`` (file + overrides to a config and back), ``checks``
(checks across fields), ``errors`` (one-line errors naming the key), ``schema`` (reading the schema),
``options`` (the documentation), ``resume`` (what a resume may change).
"""

from tdpo.config.base import Bool, Float, Int, section
from tdpo.config.checks import validate
from tdpo.config.data import DataConfig
from tdpo.config.errors import ConfigError, explain
from tdpo.config.loading import config_from_dict, config_to_dict, load_config, save_config
from tdpo.config.options import describe, field_docs, format_options
from tdpo.config.parsing import parse_override, yaml_load
from tdpo.config.resume import RESUMABLE_CHANGES, training_changes
from tdpo.config.sections import (
    CheckpointConfig,
    DivergenceConfig,
    EvalConfig,
    LoggingConfig,
    LoraConfig,
    LossConfig,
    LossName,
    ModelConfig,
    OptimConfig,
    ReferenceConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = [
    "Bool",
    "Float",
    "Int",
    "explain",
    "section",
    "RESUMABLE_CHANGES",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DivergenceConfig",
    "EvalConfig",
    "LoggingConfig",
    "LoraConfig",
    "LossConfig",
    "LossName",
    "ModelConfig",
    "OptimConfig",
    "ReferenceConfig",
    "ScheduleConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "describe",
    "field_docs",
    "format_options",
    "load_config",
    "parse_override",
    "save_config",
    "training_changes",
    "validate",
    "yaml_load",
]
