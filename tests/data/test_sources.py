"""Telling local paths from hub names, and the source aliases."""

import pytest

from tdpo.data.readers import check_local_source
from tdpo.data.sources import is_local, resolve_source


def test_source_resolution(tmp_path):
    assert resolve_source("hh") == "Anthropic/hh-rlhf"
    assert resolve_source("tldr") == "openai/summarize_from_feedback"
    assert not is_local("Anthropic/hh-rlhf")
    assert is_local("some/dir/file.parquet")
    other = tmp_path / "noext"
    other.write_text("{}")
    assert is_local(str(other))


def test_a_path_is_local_even_when_missing_and_without_suffix(tmp_path):
    missing = tmp_path / "nonexistent_no_suffix"
    assert is_local(str(missing)) and is_local("./data/pairs") and is_local("runs/a/b")
    assert not is_local("pairs") and not is_local("owner/name")
    with pytest.raises(FileNotFoundError, match=f"^data.source: no such file: {missing}$"):
        check_local_source(str(missing), "data.source")
    with pytest.raises(ValueError, match="^data.test_split: .* is a folder"):
        check_local_source(str(tmp_path), "data.test_split")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ValueError, match="^data.source: .*d.txt: cannot tell the file format"):
        check_local_source(str(tmp_path / "d.txt"), "data.source")
