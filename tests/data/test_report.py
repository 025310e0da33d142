import json

from tdpo.data.report import REPORT_FILE, DataReport


def test_report_saves_and_loads_as_json(tmp_path):
    report = DataReport(
        source="d.jsonl", shape="hh", task="preference", train_from="d.jsonl", rows_read={"train": 12},
        num_train=9, invalid={"empty_field": 2, "malformed_json": 1},
        invalid_examples={"empty_field": "d.jsonl:4: field 'chosen': empty [empty_field]."},
        filtered={"score_ratio": 3}, prompt_truncated=1,
    )
    assert report.num_invalid == 3
    written = report.save(tmp_path)  # a folder: the standard file name inside it
    assert written == tmp_path / REPORT_FILE
    data = json.loads(written.read_text())
    assert data["invalid"] == {"empty_field": 2, "malformed_json": 1} and data["rows_read"] == {"train": 12}
    assert DataReport.load(tmp_path) == report
    other = report.save(tmp_path / "sub" / "r.json")
    assert DataReport.load(other) == report
