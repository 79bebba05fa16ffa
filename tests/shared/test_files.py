"""The shared file helpers: versioned JSON and staged directories."""

import json

import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, staged_directory, write_json

KIND = JsonKind("edgetqs.example", 3, "example file", "re-run `edgetqs example`",
                upgrades={1: lambda d: {**{k: v for k, v in d.items() if k != "a"}, "b": d["a"]}, 2: lambda d: {**d, "c": 2 * d["b"]}})


def test_write_puts_format_and_version_first_and_reads_back(tmp_path):
    path = write_json(tmp_path / "x.json", KIND, {"b": 1, "c": 2, "version": 0})
    assert list(json.loads(path.read_text()))[:2] == ["format", "version"]
    assert read_json(path, KIND) == {"format": "edgetqs.example", "version": 3, "b": 1, "c": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_old_versions_are_upgraded_step_by_step(tmp_path):
    (tmp_path / "v1.json").write_text(json.dumps({"format": "edgetqs.example", "version": 1, "a": 5}))
    assert read_json(tmp_path / "v1.json", KIND) == {"format": "edgetqs.example", "version": 3, "b": 5, "c": 10}


@pytest.mark.parametrize("text,message", [
    ('{"format": "edgetqs.plan", "version": 3}', r"x.json is not an edgetqs example file \(format 'edgetqs.plan', expected 'edgetqs.example'\)"),
    ('[1, 2]', r"not an edgetqs example file \(format 'list'"),
    ('{"format": "edgetqs.example", "version": 9}', r"example file .*x.json has version 9; this edgetqs reads versions 1, 2, 3"),
    ('{nope', r"example file .*x.json is not valid JSON"),
])
def test_bad_files_name_the_file_the_expectation_and_the_fix(tmp_path, text, message):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(EdgeTQSError, match=message) as caught:
        read_json(tmp_path / "x.json", KIND)
    assert caught.value.fix == "re-run `edgetqs example`"


def test_missing_file_and_version_only_kinds(tmp_path):
    with pytest.raises(EdgeTQSError, match="no example file at"):
        read_json(tmp_path / "absent.json", KIND)
    card_like = JsonKind(None, 1, "model card", "rebuild it")
    path = write_json(tmp_path / "c.json", card_like, {"name": "m"})
    assert json.loads(path.read_text()) == {"version": 1, "name": "m"}
    path.write_text('{"version": 2}')
    with pytest.raises(EdgeTQSError, match="has version 2; this edgetqs reads version 1\n"):
        read_json(path, card_like)


def test_staged_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "half").write_text("x")
            raise RuntimeError("verification failed")
    assert list(tmp_path.iterdir()) == []  # no target, no staging left
    with staged_directory(target) as staging:
        (staging / "a").write_text("1")
        assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "a").read_text() == "1"


def test_staged_directory_keeps_or_replaces_an_existing_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    with staged_directory(target) as staging:  # another process finished first: theirs stays
        (staging / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["old"]
    with staged_directory(target, replace=True) as staging:
        (staging / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
