"""Monthly CSV snapshots into PostgreSQL's raw schema (`make ingest`).

`python -m scripts.ingest [--month month_001] [--data-dir DIR]` loads every
month of DIR/manifest.csv, or the one named. csv_reader.py says which input
is accepted, loader.py how a month is written, schema.py the tables.
"""

from scripts.ingest.errors import IngestError, Problem
from scripts.ingest.loader import MonthLoad, ingest, load_month, read_month

__all__ = ["IngestError", "MonthLoad", "Problem", "ingest", "load_month", "read_month"]
