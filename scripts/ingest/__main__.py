"""Command line: `python -m scripts.ingest [--month month_001] [--data-dir DIR]`.

Bad input or an unreachable database ends with one readable message on
stderr and exit status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import psycopg

from scripts.ingest.errors import IngestError
from scripts.ingest.loader import ingest
from scripts.manifest import DEFAULT_DATA_DIR, ManifestError
from scripts.settings import PgSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.ingest",
        description="Load monthly CSV snapshots into the raw schema.",
    )
    parser.add_argument("--month", help="load only this month folder (month_001)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder holding manifest.csv and the month folders (default: data/)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = PgSettings.from_env()
    try:
        ingest(settings, args.data_dir, args.month)
    except ManifestError as error:
        sys.stderr.write(f"ingest failed: bad manifest: {error}\n")
        return 1
    except IngestError as error:
        # Each line already names the file; the month it belongs to is
        # unchanged in the database (see loader.py).
        sys.stderr.write(f"ingest failed:\n{error}\n")
        return 1
    except psycopg.OperationalError as error:
        sys.stderr.write(
            f"ingest failed: cannot use the {settings.describe()}: "
            f"{str(error).strip()}\n(run `make db-up`, or check the PG* settings)\n"
        )
        return 1
    except psycopg.Error as error:
        # The raw tables exist but differ from schema.py, a permission, ...
        sys.stderr.write(f"ingest failed: database error: {str(error).strip()}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
