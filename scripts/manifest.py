"""Which data folder holds which monthly snapshot: data/manifest.csv.

The manifest has the header `month,as_of` and one line per month folder, for
example `month_000,2024-01-31`. Adding a month means adding a folder and a
line here; no code knows the dates.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / "data"
MANIFEST_NAME = "manifest.csv"
HEADER = ["month", "as_of"]
# A folder name, not a path: keeps a manifest line from pointing elsewhere
# ("." and ".." are names too, of this folder and its parent).
MONTH_NAME = re.compile(r"^(?!\.+$)[A-Za-z0-9_.-]+$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ManifestError(ValueError):
    """data/manifest.csv is missing, malformed or names a missing folder."""


@dataclass(frozen=True)
class MonthEntry:
    month: str
    as_of: date
    folder: Path


def read_manifest(data_dir: Path = DEFAULT_DATA_DIR) -> list[MonthEntry]:
    """The manifest's months, in file order, each checked against its folder."""
    path = data_dir / MANIFEST_NAME
    try:
        # utf-8-sig and newline="" so that a BOM or CRLF from a spreadsheet
        # save does not change what is read.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        # A folder of that name, no permission, --data-dir naming a file.
        raise ManifestError(f"{path}: cannot read ({error.strerror})") from None

    if not rows:
        raise ManifestError(f"{path}:1: empty file, expected the header month,as_of")
    if rows[0] != HEADER:
        raise ManifestError(
            f"{path}:1: header is {','.join(rows[0])!r}, expected 'month,as_of'"
        )

    entries: list[MonthEntry] = []
    month_lines: dict[str, int] = {}
    as_of_lines: dict[date, int] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # blank lines carry nothing; editors often leave one
        where = f"{path}:{line_number}"
        if len(row) != 2:
            raise ManifestError(f"{where}: expected 2 fields, found {len(row)}")
        month, as_of_text = row
        if not MONTH_NAME.match(month):
            raise ManifestError(
                f"{where} column 'month': {month!r} is not a folder name"
            )
        as_of = _parse_date(as_of_text, where)
        if (as_of + timedelta(days=1)).day != 1:
            # Snapshots are taken at month end; any other date is a typo that
            # would otherwise surface later as a failing dbt test.
            raise ManifestError(
                f"{where} column 'as_of': {as_of} is not the last day of its month"
            )
        if month in month_lines:
            raise ManifestError(
                f"{where} column 'month': {month!r} is already on line "
                f"{month_lines[month]}"
            )
        if as_of in as_of_lines:
            raise ManifestError(
                f"{where} column 'as_of': {as_of} is already on line "
                f"{as_of_lines[as_of]} (each month needs its own date)"
            )
        folder = data_dir / month
        if not folder.is_dir():
            raise ManifestError(f"{where} column 'month': folder {folder} not found")
        month_lines[month] = line_number
        as_of_lines[as_of] = line_number
        entries.append(MonthEntry(month=month, as_of=as_of, folder=folder))

    if not entries:
        raise ManifestError(f"{path}: no months listed")
    logger.debug("manifest %s: %d months", path, len(entries))
    return entries


def _parse_date(text: str, where: str) -> date:
    # fromisoformat alone would also take "20240131"; keep the one spelling.
    if ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ManifestError(f"{where} column 'as_of': {text!r} is not a date (YYYY-MM-DD)")
