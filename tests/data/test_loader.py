import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tdpo.data import DataConfig, InvalidRecord, load_preference_data, load_sft_data
from tdpo.data.collate import IGNORE_INDEX
from tdpo.data.records import INVALID_KINDS, SKIP_HINT

PLAIN = [
    {"prompt": f"Question {i}: what colour is the sky?", "chosen": f" Blue, mostly {i}.", "rejected": f" Green {i}."}
    for i in range(6)
]
HH = [
    {
        "chosen": f"\n\nHuman: Hi {i}\n\nAssistant: Hello!\n\nHuman: Tell me a fact.\n\nAssistant: Water boils at {i}00 C.",
        "rejected": f"\n\nHuman: Hi {i}\n\nAssistant: Hello!\n\nHuman: Tell me a fact.\n\nAssistant: No.",
    }
    for i in range(6)
]
CHAT = [
    {
        "prompt": [{"role": "user", "content": f"Name a fruit, number {i}."}],
        "chosen": [{"role": "assistant", "content": f"An apple ({i})."}],
        "rejected": [{"role": "assistant", "content": "I will not."}],
    }
    for i in range(6)
]


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def cfg(source, **kw):
    kw.setdefault("cache", False)
    kw.setdefault("test_size", 0)
    return DataConfig(source=source, **kw)


def unmasked(batch, row):
    labels = batch["labels"][row]
    return labels[labels != IGNORE_INDEX].tolist()


def check_labels(tok, loaded, prompts, chosens, rejecteds):
    """Unmasked labels are exactly tokenize(response) + EOS; the rest of the row is tokenize(prompt)."""
    train = loaded.train
    batch = loaded.collate([train[i] for i in range(len(train))])
    b = len(train)
    eos = tok.eos_token_id
    for i in range(b):
        p = tok(prompts[i], add_special_tokens=False)["input_ids"]
        for row, text in ((i, chosens[i]), (b + i, rejecteds[i])):
            r = tok(text, add_special_tokens=False)["input_ids"] + [eos]
            assert unmasked(batch, row) == r
            n = int(batch["attention_mask"][row].sum())
            assert batch["input_ids"][row, :n].tolist() == p + r
            assert (batch["labels"][row, : len(p)] == IGNORE_INDEX).all()
    assert batch["index"].tolist() == list(range(b))
    return batch


# ---------------------------------------------------------------- labels on the real SmolLM2 tokenizer


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_plain_pairs_every_format(tmp_path, smollm2_tokenizer, fmt):
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        jsonl(path, PLAIN)
    elif fmt == "json":
        path.write_text(json.dumps(PLAIN))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(PLAIN), path)
    else:
        import csv

        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["prompt", "chosen", "rejected"])
            w.writeheader()
            w.writerows(PLAIN)
    loaded = load_preference_data(cfg(str(path)), smollm2_tokenizer)
    assert loaded.report.shape == "prompt_chosen_rejected" and loaded.report.num_train == 6
    assert loaded.eval is None
    check_labels(
        smollm2_tokenizer, loaded, [r["prompt"] for r in PLAIN], [r["chosen"] for r in PLAIN], [r["rejected"] for r in PLAIN]
    )


def test_hh_labels(tmp_path, smollm2_tokenizer):
    loaded = load_preference_data(cfg(jsonl(tmp_path / "hh.jsonl", HH)), smollm2_tokenizer)
    assert loaded.report.shape == "hh"
    cut = [r["chosen"].rindex("Assistant:") + len("Assistant:") for r in HH]
    prompts = [r["chosen"][:k] for r, k in zip(HH, cut)]
    check_labels(
        smollm2_tokenizer,
        loaded,
        prompts,
        [r["chosen"][k:] for r, k in zip(HH, cut)],
        [r["rejected"][k:] for r, k in zip(HH, cut)],
    )


def test_hh_whitespace_variants_labels(tmp_path, smollm2_tokenizer):
    """Transcripts with Windows line ends, single newlines and spaces around the markers: the prompt runs
    through the last Assistant marker (line ends normalised to \\n), the labels are the response + EOS."""
    rows = [
        {"chosen": "\r\n\r\nHuman: Hi\r\n\r\nAssistant: Hey\r\n\r\nHuman: Fact?\r\n\r\nAssistant: Ice floats.",
         "rejected": "\r\n\r\nHuman: Hi\r\n\r\nAssistant: Hey\r\n\r\nHuman: Fact?\r\n\r\nAssistant: No."},
        {"chosen": "Human: Hi\nAssistant: Hey\nHuman: Fact?\nAssistant: Ice floats.",
         "rejected": "Human: Hi\nAssistant: Hey\nHuman: Fact?\nAssistant: No."},
        {"chosen": "\n\n Human : Hi\n\n\tAssistant :Ice floats.", "rejected": "\n\n Human : Hi\n\n\tAssistant :No."},
    ]
    loaded = load_preference_data(cfg(jsonl(tmp_path / "hh.jsonl", rows), shape="hh"), smollm2_tokenizer)
    prompts = ["\n\nHuman: Hi\n\nAssistant: Hey\n\nHuman: Fact?\n\nAssistant:",
               "Human: Hi\nAssistant: Hey\nHuman: Fact?\nAssistant:", "\n\n Human : Hi\n\n\tAssistant :"]
    chosen, rejected = [" Ice floats.", " Ice floats.", "Ice floats."], [" No.", " No.", "No."]
    assert loaded.train["prompt"] == prompts and loaded.train["chosen"] == chosen
    check_labels(smollm2_tokenizer, loaded, prompts, chosen, rejected)


def test_chat_template_labels(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    loaded = load_preference_data(cfg(jsonl(tmp_path / "chat.jsonl", CHAT)), tok)
    assert loaded.report.shape == "conversational"
    batch = loaded.collate([loaded.train[i] for i in range(6)])
    eos = tok.eos_token_id
    for i, rec in enumerate(CHAT):
        for row, key in ((i, "chosen"), (6 + i, "rejected")):
            content = rec[key][0]["content"]
            assert unmasked(batch, row) == tok(content, add_special_tokens=False)["input_ids"] + [eos]
            # the whole row is what the chat template gives for the conversation, minus the "\n" after EOS
            full = tok.apply_chat_template(rec["prompt"] + rec[key], tokenize=True)
            full = full["input_ids"] if isinstance(full, dict) or hasattr(full, "keys") else full
            newline = tok("\n", add_special_tokens=False)["input_ids"]
            assert full[-len(newline) :] == newline
            n = int(batch["attention_mask"][row].sum())
            assert batch["input_ids"][row, :n].tolist() == list(full[: -len(newline)])


def test_multi_turn_chat_labels_are_the_last_assistant_turn(tmp_path, smollm2_tokenizer):
    """Implicit conversational prompt: the shared messages (here a system message and two turns) are the
    prompt; only the final assistant message + EOS is learned, and the row is the template's rendering."""
    tok = smollm2_tokenizer
    shared = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "A colour?"}]
    rows = [{"chosen": shared + [{"role": "assistant", "content": f"Blue {i}."}],
             "rejected": shared + [{"role": "assistant", "content": "No."}]} for i in range(3)]
    loaded = load_preference_data(cfg(jsonl(tmp_path / "chat.jsonl", rows)), tok)
    assert loaded.report.shape == "conversational"
    batch = loaded.collate([loaded.train[i] for i in range(3)])
    eos = tok.eos_token_id
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    for i, rec in enumerate(rows):
        for row, key in ((i, "chosen"), (3 + i, "rejected")):
            content = rec[key][-1]["content"]
            assert unmasked(batch, row) == tok(content, add_special_tokens=False)["input_ids"] + [eos]
            full = tok.apply_chat_template(rec[key], tokenize=False)
            assert full.endswith("<|im_end|>\n") and full.count("<|im_end|>") == 5  # the earlier turns are closed
            n = int(batch["attention_mask"][row].sum())
            expected = tok(full, add_special_tokens=False)["input_ids"]
            assert expected[-len(newline):] == newline
            assert batch["input_ids"][row, :n].tolist() == expected[: -len(newline)]
            # everything before the last assistant message's content is masked, its earlier turns included
            masked = n - len(unmasked(batch, row))
            prompt = tok.apply_chat_template(shared, tokenize=False, add_generation_prompt=True)
            assert masked == len(tok(prompt, add_special_tokens=False)["input_ids"])


def test_sft_prompt_completion_labels(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    rows = [{"prompt": f"Review {i}:", "completion": f" a fine film, {i} stars."} for i in range(3)]
    loaded = load_sft_data(cfg(jsonl(tmp_path / "pc.jsonl", rows)), tok)
    assert loaded.report.shape == "prompt_completion"
    batch = loaded.collate([loaded.train[i] for i in range(3)])
    for i, r in enumerate(rows):
        p = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        c = tok(r["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert unmasked(batch, i) == c
        assert batch["input_ids"][i, : len(p) + len(c)].tolist() == p + c


def test_sft_text_and_messages(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    texts = [{"text": f"This film was great, {i} stars.", "label": 1} for i in range(4)]
    loaded = load_sft_data(cfg(jsonl(tmp_path / "imdb.jsonl", texts)), tok)
    assert loaded.report.shape == "text" and loaded.report.task == "sft"
    batch = loaded.collate([loaded.train[i] for i in range(4)])
    for i, row in enumerate(texts):
        assert unmasked(batch, i) == tok(row["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    msgs = [{"messages": r["prompt"] + r["chosen"]} for r in CHAT]
    loaded = load_sft_data(cfg(jsonl(tmp_path / "msgs.jsonl", msgs)), tok)
    assert loaded.report.shape == "messages"
    batch = loaded.collate([loaded.train[0]])
    assert unmasked(batch, 0) == tok(CHAT[0]["chosen"][0]["content"], add_special_tokens=False)["input_ids"] + [2]


def test_truncation_on_real_dialogue(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    long_turns = "".join(f"\n\nHuman: tell me about topic number {k}\n\nAssistant: topic {k} is nice." for k in range(30))
    row = {"chosen": long_turns + "\n\nHuman: last one?\n\nAssistant:" + " yes" * 100, "rejected": long_turns
           + "\n\nHuman: last one?\n\nAssistant: no"}
    loaded = load_preference_data(cfg(jsonl(tmp_path / "long.jsonl", [row]), max_length=64, max_prompt_length=24), tok)
    rec = loaded.train[0]
    prompt = row["rejected"][: row["rejected"].rindex("Assistant:") + len("Assistant:")]
    assert rec["prompt_input_ids"] == tok(prompt)["input_ids"][-24:]  # keeps the end: last turn + cue
    assert rec["chosen_input_ids"] == tok(" yes" * 100)["input_ids"][:40]  # cut at the end, no EOS
    assert rec["rejected_input_ids"] == tok(" no")["input_ids"] + [tok.eos_token_id]
    assert loaded.report.prompt_truncated == 1 and loaded.report.response_truncated == 1


# ---------------------------------------------------------------- bad records: one error, or skip and count

GOOD = {"prompt": "Q", "chosen": " good", "rejected": " bad"}
# kind -> (the bad JSONL line, the field named, words of the error's detail)
BAD_LINES = {
    "malformed_json": ('{"prompt": "Q", "chosen": " good",', None, "Expecting property name"),
    "missing_field": (json.dumps({"prompt": "Q", "chosen": " good"}), "rejected", "missing (absent or null)"),
    "empty_field": (json.dumps({"prompt": "Q", "chosen": "", "rejected": " bad"}), "chosen", "empty"),
    "wrong_type": (json.dumps({"prompt": ["Q"], "chosen": " good", "rejected": " bad"}), "prompt",
                   "expected a string, got list"),
    "identical_responses": (json.dumps({"prompt": "Q", "chosen": " same", "rejected": " same"}), "rejected",
                            "chosen and rejected responses are identical"),
    "undecodable": (b'{"prompt": "Q", "chosen": " g\xe9\xe9", "rejected": " bad"}', "chosen",
                    "bytes that are not valid UTF-8 (byte 29 of the line: b'\\xe9')"),
    "bad_messages": (json.dumps({"prompt": "Q", "chosen": [{"content": "x"}], "rejected": [{"role": "assistant",
                                                                                         "content": "y"}]}), "chosen[0]",
                     "message without a string 'role'"),
    "bad_transcript": (json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c", "rejected": "x"}), "chosen",
                       "the transcript's last turn is the Human's, not the Assistant's"),
    "prompt_mismatch": (json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: z\n\nAssistant: y"}),
                        "rejected",
                        "the rejected transcript's dialogue before its last Assistant turn differs from the chosen one's"),
}
# kinds tested elsewhere in this file, through the loader too, with both the error and the skip path
OTHER_KINDS = {"prompt_too_long": "test_prompt_too_long_error_and_skip",
               "malformed_row": "test_bad_records_in_every_format"}


def test_every_invalid_kind_has_a_load_test():
    from tdpo.data import INVALID_KINDS

    assert set(BAD_LINES) | set(OTHER_KINDS) == set(INVALID_KINDS)
    assert all(name in globals() for name in OTHER_KINDS.values())


def write_with_bad_line(path, bad: str | bytes, good_rows):
    lines = [json.dumps(r).encode() for r in good_rows]
    lines.insert(2, bad if isinstance(bad, bytes) else bad.encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_each_bad_record_kind(tmp_path, smollm2_tokenizer, kind, caplog):
    bad, field, detail = BAD_LINES[kind]
    hh_kind = kind in ("bad_transcript", "prompt_mismatch")
    good = HH[:4] if hh_kind else [dict(GOOD, prompt=f"Q{i}") for i in range(4)]
    path = write_with_bad_line(tmp_path / "d.jsonl", bad, good)
    shape = "hh" if hh_kind else "prompt_chosen_rejected"
    with pytest.raises(InvalidRecord) as info:
        load_preference_data(cfg(path, shape=shape), smollm2_tokenizer)
    err = info.value
    assert err.kind == kind and err.location == f"{path}:3" and err.field == field
    assert str(err).startswith(f"{path}:3: " + (f"field '{field}': " if field else "") + detail)
    assert f"[{kind}]. " in str(err) and "data.skip_invalid=true" in str(err)

    with caplog.at_level(logging.WARNING, logger="tdpo.data"):
        loaded = load_preference_data(cfg(path, shape=shape, skip_invalid=True), smollm2_tokenizer)
    assert loaded.report.invalid == {kind: 1}
    assert loaded.report.invalid_examples[kind] == str(err).replace(" " + SKIP_HINT, "")
    assert loaded.report.num_train == 4 and loaded.report.rows_read == {"train": 5}
    assert f"skipped 1 invalid records ({INVALID_KINDS[kind]}); first: {path}:3: " in caplog.text
    assert loaded.train["location"] == [f"{path}:{n}" for n in (1, 2, 4, 5)]


def test_prompt_too_long_error_and_skip(tmp_path, smollm2_tokenizer, caplog):
    tok = smollm2_tokenizer
    rows = [dict(GOOD, prompt=f"Q{i}") for i in range(3)] + [dict(GOOD, prompt="word " * 50)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    n = len(tok("word " * 50, add_special_tokens=False)["input_ids"])  # SmolLM2 adds no BOS
    assert n >= 16
    with pytest.raises(InvalidRecord) as info:
        load_preference_data(cfg(path, max_length=16, max_prompt_length=None), tok)
    err = info.value
    assert (err.kind, err.location, err.field) == ("prompt_too_long", f"{path}:4", "prompt")
    assert str(err).startswith(
        f"{path}:4: field 'prompt': the prompt has {n} tokens, leaving no room within max_length=16 [prompt_too_long]. "
    )
    with caplog.at_level(logging.WARNING, logger="tdpo.data"):
        loaded = load_preference_data(cfg(path, max_length=16, max_prompt_length=None, skip_invalid=True), tok)
    assert loaded.report.invalid == {"prompt_too_long": 1} and loaded.report.num_train == 3
    assert loaded.report.invalid_examples["prompt_too_long"] == str(err).replace(" " + SKIP_HINT, "")
    assert f"skipped 1 invalid records ({INVALID_KINDS['prompt_too_long']}); first: {path}:4" in caplog.text
    assert loaded.train["index"] == [0, 1, 2]
    assert loaded.train["location"] == [f"{path}:{k}" for k in (1, 2, 3)]
    # a prompt that fits exactly but for one response token is not invalid: the response is cut to that token
    exact = [dict(GOOD, prompt="word " * 15)]
    m = len(tok("word " * 15, add_special_tokens=False)["input_ids"])
    loaded = load_preference_data(cfg(jsonl(tmp_path / "e.jsonl", exact), max_length=m + 1, max_prompt_length=None),
                                  tok)
    assert loaded.train[0]["chosen_input_ids"] == tok(" good", add_special_tokens=False)["input_ids"][:1]


def _write_rows(path, fmt, text_rows):
    """Write ``text_rows`` (dicts of strings or None) as a file of format ``fmt``; return its path."""
    if fmt == "csv":
        import csv

        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["prompt", "chosen", "rejected"])
            for r in text_rows:
                w.writerow(r) if isinstance(r, list) else w.writerow([r["prompt"], r["chosen"], r["rejected"]])
    elif fmt == "json":
        path.write_text(json.dumps(text_rows))
    else:
        pq.write_table(pa.Table.from_pylist(text_rows), path)
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_bad_records_in_every_format(tmp_path, smollm2_tokenizer, fmt, caplog):
    """Each file format names the line (CSV: 1-based, header = line 1) or the row/item (JSON, Parquet: 0-based)
    and the field; skipped records are counted per kind."""
    good = [dict(GOOD, prompt=f"Q{i}") for i in range(3)]
    bad = [
        ("missing_field", "rejected", {"prompt": "Q", "chosen": " good", "rejected": None}),
        ("empty_field", "chosen", {"prompt": "Q", "chosen": "  ", "rejected": " bad"}),
        ("identical_responses", "rejected", {"prompt": "Q", "chosen": " same", "rejected": " same"}),
    ]
    rows = good[:1] + [r for _, _, r in bad] + good[1:]
    if fmt == "csv":
        rows = [[r["prompt"], r["chosen"], r["rejected"] or ""] for r in rows]
        rows[1] = ["Q", " good"]  # a short CSV row: the missing cell is missing
        rows.insert(2, ["Q", " a", " b", " extra"])  # one cell too many
    path = _write_rows(tmp_path / f"d.{fmt}", fmt, rows)

    def where(i):
        return {"csv": f"{path}:{i + 2}", "json": f"{path} item {i}", "parquet": f"{path} row {i}"}[fmt]

    expected = [(kind, field, 1 + k) for k, (kind, field, _) in enumerate(bad)]
    if fmt == "csv":
        expected = [("missing_field", "rejected", 1), ("malformed_row", None, 2), ("empty_field", "chosen", 3),
                    ("identical_responses", "rejected", 4)]
    kind, field, i = expected[0]
    with pytest.raises(InvalidRecord) as info:
        load_preference_data(cfg(path), smollm2_tokenizer)
    assert (info.value.kind, info.value.location, info.value.field) == (kind, where(i), field)
    assert str(info.value).startswith(f"{where(i)}: field '{field}': missing (absent or null) [missing_field]. ")

    with caplog.at_level(logging.WARNING, logger="tdpo.data"):
        loaded = load_preference_data(cfg(path, skip_invalid=True), smollm2_tokenizer)
    rep = loaded.report
    assert rep.invalid == {kind: 1 for kind, _, _ in expected}
    for kind, field, i in expected:
        assert rep.invalid_examples[kind].startswith(f"{where(i)}: " + (f"field '{field}': " if field else ""))
        assert f"skipped 1 invalid records ({INVALID_KINDS[kind]}); first: {where(i)}" in caplog.text
    if fmt == "csv":
        assert rep.invalid_examples["malformed_row"].startswith(
            f"{where(2)}: 1 more cell(s) than the header's 3 columns [malformed_row]."
        )
    assert rep.num_train == 3 and rep.rows_read == {"train": 3 + len(expected)}
    assert loaded.train["prompt"] == ["Q0", "Q1", "Q2"]


def test_the_error_is_the_first_bad_record_in_file_order(tmp_path, smollm2_tokenizer):
    """Rows read ahead for shape detection do not change which error stops the load: a missing field on
    line 2 comes before malformed JSON on line 4 and undecodable bytes on the last line."""
    lines = [json.dumps(GOOD).encode(), json.dumps({"prompt": "Q", "chosen": " a"}).encode(),
             json.dumps(dict(GOOD, prompt="Q2")).encode(), b"{oops", b'{"prompt": "\xff", "chosen": "a", "rejected": "b"}']
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InvalidRecord) as info:
        load_preference_data(cfg(str(path)), smollm2_tokenizer)
    assert (info.value.kind, info.value.location) == ("missing_field", f"{path}:2")
    rep = load_preference_data(cfg(str(path), skip_invalid=True), smollm2_tokenizer).report
    assert rep.invalid == {"malformed_json": 1, "missing_field": 1, "undecodable": 1}
    assert rep.invalid_examples["undecodable"].startswith(f"{path}:5: field 'prompt': ")
    assert rep.num_train == 2 and rep.rows_read == {"train": 5}


def test_counts_of_several_kinds_add_up(tmp_path, smollm2_tokenizer):
    lines = [json.dumps(dict(GOOD, prompt=f"Q{i}")) for i in range(5)]
    lines += ["not json", json.dumps({"prompt": "Q", "chosen": 1, "rejected": "x"}), "[1]",
              json.dumps({"prompt": "Q", "chosen": " same", "rejected": " same"})]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rep = load_preference_data(cfg(str(path), skip_invalid=True), smollm2_tokenizer).report
    assert rep.invalid == {"malformed_json": 2, "wrong_type": 1, "identical_responses": 1}
    assert rep.num_train + rep.num_invalid == 9 == rep.rows_read["train"]


# ---------------------------------------------------------------- splits, sources, cache


def test_held_out_split_is_deterministic(tmp_path, smollm2_tokenizer):
    rows = [dict(GOOD, prompt=f"Q{i}") for i in range(40)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    a = load_preference_data(cfg(path, test_size=0.25, seed=1), smollm2_tokenizer)
    b = load_preference_data(cfg(path, test_size=0.25, seed=1), smollm2_tokenizer)
    c = load_preference_data(cfg(path, test_size=0.25, seed=2), smollm2_tokenizer)
    assert len(a.train) == 30 and len(a.eval) == 10
    assert a.eval["prompt"] == b.eval["prompt"] != c.eval["prompt"]
    assert not set(a.eval["prompt"]) & set(a.train["prompt"])
    assert a.eval["index"] == list(range(10))
    assert "held out 25%" in a.report.eval_from


def test_too_few_rows_to_hold_out_says_so(tmp_path, smollm2_tokenizer):
    path = jsonl(tmp_path / "d.jsonl", PLAIN[:1])
    loaded = load_preference_data(cfg(path, test_size=0.5), smollm2_tokenizer)
    assert loaded.eval is None and len(loaded.train) == 1
    assert loaded.report.eval_from == "none (1 usable source row(s): too few to hold any out)"


def test_separate_test_file_and_none(tmp_path, smollm2_tokenizer):
    train = jsonl(tmp_path / "train.jsonl", PLAIN)
    test = jsonl(tmp_path / "test.jsonl", PLAIN[:2])
    loaded = load_preference_data(cfg(train, test_split=test), smollm2_tokenizer)
    assert (len(loaded.train), len(loaded.eval)) == (6, 2)
    assert loaded.report.eval_from == test
    loaded = load_preference_data(cfg(train, test_split="none", test_size=0.5), smollm2_tokenizer)
    assert loaded.eval is None and len(loaded.train) == 6
    with pytest.raises(ValueError, match="a local source has no named splits"):
        load_preference_data(cfg(train, test_split="test"), smollm2_tokenizer)


def fake_hub(monkeypatch, tables):
    import datasets

    calls = []

    def load_dataset(name, subset=None, *, split, data_dir=None, revision=None):
        calls.append((name, subset, split))
        return datasets.Dataset.from_list(tables[split])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hh_hub_preset_uses_its_test_split(monkeypatch, smollm2_tokenizer):
    calls = fake_hub(monkeypatch, {"train": HH, "test": HH[:2]})
    loaded = load_preference_data(cfg("hh"), smollm2_tokenizer)
    assert calls == [("Anthropic/hh-rlhf", None, "train"), ("Anthropic/hh-rlhf", None, "test")]
    assert (loaded.report.shape, len(loaded.train), len(loaded.eval)) == ("hh", 6, 2)
    assert loaded.train["location"][1] == "Anthropic/hh-rlhf[train] row 1"


def test_shp_tldr_and_stack_exchange_presets(monkeypatch, smollm2_tokenizer):
    shp = [
        {"post_id": str(i), "history": f"Why {i}?", "human_ref_A": "Because.", "human_ref_B": "No idea.",
         "labels": i % 2, "score_A": 10, "score_B": 2 + 4 * (i % 2)} for i in range(4)
    ]
    fake_hub(monkeypatch, {"train": shp, "test": shp[:1]})
    rep = load_preference_data(cfg("stanfordnlp/SHP"), smollm2_tokenizer).report
    assert rep.shape == "shp" and rep.num_train == 2 and rep.filtered == {"score_ratio": 2}

    tldr = [{"info": {"id": str(i), "post": f"Post {i}", "title": "T", "subreddit": "s", "article": None, "site": None},
             "summaries": [{"text": " one", "policy": "a", "note": None}, {"text": " two", "policy": "b", "note": None}],
             "choice": i % 2, "worker": "w", "batch": "b", "split": "train", "extra": {"confidence": 1}} for i in range(3)]
    calls = fake_hub(monkeypatch, {"train": tldr, "validation": tldr[:1]})
    loaded = load_preference_data(cfg("tldr"), smollm2_tokenizer)
    assert calls[0] == ("openai/summarize_from_feedback", "comparisons", "train")
    assert loaded.report.shape == "tldr" and loaded.train["chosen"] == [" one", " two", " one"]

    se = [{"qid": i, "question": f"How {i}?", "date": "2020", "metadata": [],
           "answers": [{"answer_id": 1, "author": "a", "author_id": 1, "author_profile": "p", "pm_score": 3,
                        "selected": True, "text": "Do it."},
                       {"answer_id": 2, "author": "b", "author_id": 2, "author_profile": "p", "pm_score": 1,
                        "selected": False, "text": "Don't."}]} for i in range(10)]
    fake_hub(monkeypatch, {"train": se})
    loaded = load_preference_data(cfg("se", test_size=0.2), smollm2_tokenizer)
    assert loaded.report.shape == "stack_exchange" and (len(loaded.train), len(loaded.eval)) == (8, 2)


def test_imdb_preset_for_sft(monkeypatch, smollm2_tokenizer):
    fake_hub(monkeypatch, {"train": [{"text": "Great film.", "label": 1}] * 3, "test": [{"text": "Bad.", "label": 0}]})
    loaded = load_sft_data(cfg("imdb"), smollm2_tokenizer)
    assert (loaded.report.shape, len(loaded.train), len(loaded.eval)) == ("text", 3, 1)
    with pytest.raises(ValueError, match="holds SFT data"):
        load_preference_data(cfg("imdb"), smollm2_tokenizer)


def test_cache_reuses_and_invalidates(tmp_path, smollm2_tokenizer):
    path = jsonl(tmp_path / "d.jsonl", PLAIN)
    options = dict(cache=True, cache_dir=str(tmp_path / "cache"))
    first = load_preference_data(cfg(path, **options), smollm2_tokenizer)
    second = load_preference_data(cfg(path, **options), smollm2_tokenizer)
    assert not first.report.from_cache and second.report.from_cache
    assert second.train.to_list() == first.train.to_list()
    third = load_preference_data(cfg(path, max_length=300, **options), smollm2_tokenizer)
    assert not third.report.from_cache
    jsonl(tmp_path / "d.jsonl", PLAIN[:3])
    fourth = load_preference_data(cfg(path, **options), smollm2_tokenizer)
    assert not fourth.report.from_cache and len(fourth.train) == 3


def test_no_usable_record(tmp_path, smollm2_tokenizer):
    path = jsonl(tmp_path / "d.jsonl", [{"prompt": "Q", "chosen": " a", "rejected": " a"}])
    with pytest.raises(ValueError, match=r"no usable records .*1 rows read, 1 invalid skipped"):
        load_preference_data(cfg(path, skip_invalid=True), smollm2_tokenizer)


def test_tokenizer_with_bos_and_without_pad(tmp_path, bos_tokenizer):
    tok = bos_tokenizer
    rows = [{"prompt": "Human: hello", "chosen": " there", "rejected": " you are fine today"},
            {"prompt": [{"role": "user", "content": "hello"}], "chosen": [{"role": "assistant", "content": "there"}],
             "rejected": [{"role": "assistant", "content": "go away"}]}]
    plain = load_preference_data(cfg(jsonl(tmp_path / "p.jsonl", rows[:1])), tok)
    chat = load_preference_data(cfg(jsonl(tmp_path / "c.jsonl", rows[1:])), tok)
    for loaded in (plain, chat):
        batch = loaded.collate([loaded.train[0]])
        mask = batch["attention_mask"].bool()
        for row in range(2):
            ids = batch["input_ids"][row][mask[row]].tolist()
            assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
            assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
        assert (batch["input_ids"][~mask] == tok.eos_token_id).all()  # EOS pads
    batch = plain.collate([plain.train[0]])
    assert unmasked(batch, 1) == tok(" you are fine today", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_shape_detected_even_when_the_first_row_is_bad(tmp_path, smollm2_tokenizer):
    rows = [{"prompt": "Q0", "chosen": " a"}] + [dict(GOOD, prompt=f"Q{i}") for i in range(1, 4)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InvalidRecord) as info:
        load_preference_data(cfg(path), smollm2_tokenizer)
    assert (info.value.kind, info.value.location, info.value.field) == ("missing_field", f"{path}:1", "rejected")
    loaded = load_preference_data(cfg(path, skip_invalid=True), smollm2_tokenizer)
    assert loaded.report.shape == "prompt_chosen_rejected" and loaded.report.num_train == 3


def test_multi_process_tokenization_matches_single_process(tmp_path, smollm2_tokenizer):
    rows = [dict(GOOD, prompt=f"Question {i} " * (1 + i % 5)) for i in range(40)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    one = load_preference_data(cfg(path), smollm2_tokenizer).train
    two = load_preference_data(cfg(path, num_proc=2), smollm2_tokenizer).train
    assert two.to_list() == one.to_list()


SHP_ROWS = [{"post_id": str(i), "history": f"Why {i}?", "human_ref_A": "Because.", "human_ref_B": "No idea.",
             "labels": 1, "score_A": 12, "score_B": 3} for i in range(3)]
TLDR_ROWS = [{"info": {"id": str(i), "post": f"Post {i}", "title": "T", "subreddit": "s", "article": None},
              "summaries": [{"text": " one", "policy": "a"}, {"text": " two", "policy": "b"}], "choice": 0}
             for i in range(3)]
SE_ROWS = [{"qid": i, "question": f"How {i}?",
            "answers": [{"text": "Do it.", "pm_score": 3}, {"text": "Don't.", "pm_score": 1}]} for i in range(3)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize(
    "rows, shape, prompt, chosen, rejected",
    [
        (SHP_ROWS, "shp", "\n\nHuman: Why 0?\n\nAssistant:", " Because.", " No idea."),
        (TLDR_ROWS, "tldr", "SUBREDDIT: r/s\nTITLE: T\nPOST: Post 0\nTL;DR:", " one", " two"),
        (SE_ROWS, "stack_exchange", "\n\nHuman: How 0?\n\nAssistant:", " Do it.", " Don't."),
    ],
)
def test_hub_shapes_from_local_files(tmp_path, smollm2_tokenizer, fmt, rows, shape, prompt, chosen, rejected):
    path = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        jsonl(path, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)  # nested structs and lists
    loaded = load_preference_data(cfg(str(path)), smollm2_tokenizer)
    assert loaded.report.shape == shape and loaded.report.num_train == 3
    first = loaded.train[0]
    assert (first["prompt"], first["chosen"], first["rejected"]) == (prompt, chosen, rejected)
    check_labels(smollm2_tokenizer, loaded, [prompt.replace("0", str(i)) for i in range(3)], [chosen] * 3, [rejected] * 3)


def test_dataset_fingerprint_follows_the_content(tmp_path, smollm2_tokenizer):
    """The reference log-prob cache keys on ``dataset._fingerprint``: equal loads must share it."""
    path = jsonl(tmp_path / "d.jsonl", PLAIN)
    options = dict(cache_dir=str(tmp_path / "cache"), test_size=2)
    a = load_preference_data(cfg(path), smollm2_tokenizer)
    b = load_preference_data(cfg(path), smollm2_tokenizer)
    assert a.train._fingerprint == b.train._fingerprint
    c = load_preference_data(cfg(path, cache=True, **options), smollm2_tokenizer)
    d = load_preference_data(cfg(path, cache=True, **options), smollm2_tokenizer)
    assert d.report.from_cache
    assert c.train._fingerprint == d.train._fingerprint != a.train._fingerprint
    assert c.eval._fingerprint == d.eval._fingerprint != c.train._fingerprint
    jsonl(tmp_path / "d.jsonl", PLAIN[:5])
    e = load_preference_data(cfg(path), smollm2_tokenizer)
    assert e.train._fingerprint != a.train._fingerprint


def test_column_mapping_max_records_and_format_override(tmp_path, smollm2_tokenizer):
    rows = [{"question": f"Q{i}?", "response_j": f" yes {i}", "response_k": f" no {i}"} for i in range(10)]
    path = tmp_path / "paired.txt"  # JSON Lines under an unknown suffix
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}
    loaded = load_preference_data(cfg(str(path), data_format="jsonl", columns=columns, max_records=4), smollm2_tokenizer)
    assert loaded.report.shape == "prompt_chosen_rejected" and loaded.report.rows_read == {"train": 4}
    assert loaded.train["prompt"] == ["Q0?", "Q1?", "Q2?", "Q3?"]
    assert loaded.train["chosen"] == [" yes 0", " yes 1", " yes 2", " yes 3"]
