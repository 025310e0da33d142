"""Tests of ``tdpo train --options``: every field with its type, default and documentation."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

from tdpo.config import LossConfig, TrainConfig, describe, field_docs, format_options
from tdpo.loss import LOSSES, PARAMS


def docs_in_source(cls: type) -> dict[str, str]:
    """The string under each field of ``cls``, read from its source (independently of pydantic)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {node.target.id: inspect.cleandoc(after.value.value)
            for node, after in zip(body, body[1:], strict=False)
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)}


def leaves(cls: type = TrainConfig, prefix: str = ""):
    """``(dotted key, section class, field name)`` of every leaf option."""
    for f in dataclasses.fields(cls):
        value = getattr(cls(), f.name)
        if dataclasses.is_dataclass(value):
            yield from leaves(type(value), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", cls, f.name


def test_every_field_is_listed_with_its_default_and_its_whole_documentation():
    text = format_options()
    blocks = {}
    for block in ("\n" + text).split("\n")[1:]:
        if not block.startswith(" "):
            key = block.split(" (")[0]
            blocks[key] = [block]
        else:
            blocks[key].append(block.strip())
    keys = list(leaves())
    assert [key for key, _, _ in keys] == list(blocks)
    for key, cls, name in keys:
        if cls is LossConfig and name in PARAMS:
            continue  # generated from the loss registry: see the next test
        doc = docs_in_source(cls)[name]
        assert doc.strip(), key
        assert blocks[key][0].endswith(f"; default {getattr(cls(), name)!r})"), key
        for line in doc.splitlines():
            assert line.strip() in blocks[key][1:], (key, line)


def test_loss_parameters_are_fields_documented_from_the_losses_that_declare_them():
    text = format_options()
    fields = [f.name for f in dataclasses.fields(LossConfig)]
    assert fields[:5] == ["name", "beta", "alpha", "label_smoothing", "gamma"]
    for name, param in PARAMS.items():
        assert getattr(LossConfig(), name) == param.default
        header = f"loss.{name} (float; default {param.default!r})"
        assert header in text
        block = text.split(header, 1)[1].split("\nloss.", 1)[0]
        assert param.doc[1:] in " ".join(block.split())
        users = [spec.name for spec in LOSSES.values() if any(p.name == name for p in spec.params)]
        assert users and f"Read by: {', '.join(users)}." in " ".join(block.split())


def test_types_are_named_in_words():
    types = {key: tp for key, tp, _, _ in describe()}
    assert types["optim.lr"] == "float"
    assert types["optim.max_grad_norm"] == "float or null"
    assert types["model.gradient_checkpointing"] == "bool"
    assert types["lora.target_modules"] == "a list of str"
    assert types["loss.name"] == "one of " + ", ".join(repr(name) for name in LOSSES)


def test_loss_name_lists_each_loss_of_the_registry_with_its_description():
    lines = format_options().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("loss.name ("))
    block = lines[start:next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))]
    for spec in LOSSES.values():
        assert f"      {spec.name}: {spec.description}" in block


def test_field_docs_of_a_section_and_of_a_standard_dataclass():
    section = type(TrainConfig().optim)
    assert field_docs(section) == docs_in_source(section)

    @dataclasses.dataclass
    class Plain:
        size: int = 3
        """How many.

        Second paragraph."""

        name: str = "x"

    assert field_docs(Plain) == {"size": "How many.\n\nSecond paragraph."}
