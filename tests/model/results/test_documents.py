"""model/results/documents.py: a user's YAML, TOML or JSON file that does not parse is one message
naming the file, the line and the column."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.errors import InvalidArgument
from model.results.documents import read_document


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        (
            "w.yaml",
            "a: 1\nb: [1, 2\nc: 3\n",
            "w.yaml: line 3, column 2: while parsing a flow sequence: expected",
        ),
        ("w.yml", "a: {b: 1\n", "w.yml: line 2, column 1: while parsing a flow mapping"),
        ("w.toml", "a = 1\nb = [1,\n", "w.toml: not valid TOML: "),
        ("w.json", '{"a": 1,\n "b": }\n', "w.json: line 2, column 7: Expecting value"),
    ],
)
def test_a_file_that_does_not_parse_names_the_file_and_line(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidArgument) as caught:
        read_document(path)
    assert caught.value.message.startswith(f"{path}: ") and says in caught.value.message
    assert "\n" not in caught.value.message


def test_good_files_parse_by_suffix(tmp_path: Path) -> None:
    for name, text in (("a.yaml", "x: 1\n"), ("a.toml", "x = 1\n"), ("a.json", '{"x": 1}')):
        (tmp_path / name).write_text(text)
        assert read_document(tmp_path / name) == {"x": 1}


def test_other_suffixes_and_bytes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x: 1\n")
    with pytest.raises(InvalidArgument, match=r"a\.txt: expected a \.yaml or \.yml file"):
        read_document(tmp_path / "a.txt", (".yaml", ".yml"))
    (tmp_path / "b.yaml").write_bytes(b"x: \xff\n")
    with pytest.raises(InvalidArgument, match=r"b\.yaml: not UTF-8 text \(byte 3\)"):
        read_document(tmp_path / "b.yaml")
    with pytest.raises(FileNotFoundError):
        read_document(tmp_path / "missing.yaml")
