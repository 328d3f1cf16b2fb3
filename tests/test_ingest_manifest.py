"""data/manifest.csv: which folder is which month, and clear errors when the
manifest is wrong. No database needed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from scripts.manifest import ManifestError, MonthEntry, read_manifest
from tests.ingest_fixtures import REPO_DATA


def write_manifest(tmp_path: Path, text: str, folders: tuple[str, ...] = ()) -> Path:
    for folder in folders:
        (tmp_path / folder).mkdir()
    (tmp_path / "manifest.csv").write_text(text)
    return tmp_path


def test_repository_manifest_lists_both_course_months() -> None:
    assert read_manifest(REPO_DATA) == [
        MonthEntry("month_000", date(2024, 1, 31), REPO_DATA / "month_000"),
        MonthEntry("month_001", date(2024, 2, 29), REPO_DATA / "month_001"),
    ]


def test_bom_crlf_and_a_trailing_blank_line_are_accepted(tmp_path: Path) -> None:
    data_dir = write_manifest(
        tmp_path, "\ufeffmonth,as_of\r\nm1,2024-01-31\r\n\r\n", ("m1",)
    )
    assert [entry.month for entry in read_manifest(data_dir)] == ["m1"]


@pytest.mark.parametrize(
    ("text", "folders", "expected"),
    [
        ("", (), r"manifest.csv:1: empty file"),
        ("month,date\nm1,2024-01-31\n", ("m1",), r"manifest.csv:1: header is"),
        (
            "month,as_of\nm1,2024-13-45\n",
            ("m1",),
            r"manifest.csv:2 column 'as_of': '2024-13-45' is not a date",
        ),
        (
            "month,as_of\nm1,20240131\n",
            ("m1",),
            r"manifest.csv:2 column 'as_of': '20240131' is not a date",
        ),
        (
            "month,as_of\nm1,2024-01-31\nm1,2024-02-29\n",
            ("m1",),
            r"manifest.csv:3 column 'month': 'm1' is already on line 2",
        ),
        (
            "month,as_of\nm1,2024-01-31\nm2,2024-01-31\n",
            ("m1", "m2"),
            r"manifest.csv:3 column 'as_of': 2024-01-31 is already on line 2",
        ),
        (
            "month,as_of\nm1,2024-01-31\nm9,2024-02-29\n",
            ("m1",),
            r"manifest.csv:3 column 'month': folder .*m9 not found",
        ),
        (
            "month,as_of\n../elsewhere,2024-01-31\n",
            (),
            r"manifest.csv:2 column 'month': '../elsewhere' is not a folder name",
        ),
        (
            "month,as_of\n..,2024-01-31\n",
            (),
            r"manifest.csv:2 column 'month': '\.\.' is not a folder name",
        ),
        (
            "month,as_of\nm1,2024-02-28\n",
            ("m1",),
            r"manifest.csv:2 column 'as_of': 2024-02-28 is not the last day of its",
        ),
        ("month,as_of\nm1,2024-01-31,x\n", ("m1",), r"manifest.csv:2: expected 2"),
        ("month,as_of\n", (), r"manifest.csv: no months listed"),
    ],
    ids=[
        "empty",
        "wrong header",
        "bad date",
        "compact date",
        "duplicate month",
        "duplicate as_of",
        "missing folder",
        "path as month",
        "parent folder as month",
        "not a month end",
        "extra field",
        "no months",
    ],
)
def test_bad_manifest_names_line_and_column(
    tmp_path: Path, text: str, folders: tuple[str, ...], expected: str
) -> None:
    data_dir = write_manifest(tmp_path, text, folders)
    with pytest.raises(ManifestError, match=expected):
        read_manifest(data_dir)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest.csv: manifest not found"):
        read_manifest(tmp_path)


def test_manifest_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").mkdir()
    with pytest.raises(ManifestError, match="manifest.csv: cannot read"):
        read_manifest(tmp_path)
