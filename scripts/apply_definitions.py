"""Register the Feast definitions of feature_repo/ in the PostgreSQL registry.

`make apply` (python -m scripts.apply_definitions) does what `feast apply` does
-- objects removed from the repository are deleted from the registry and their
online tables dropped -- but only when something changed, and it installs the
keep-newest trigger on every online table afterwards.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from scripts.feast_store import apply_definitions, configure_cli_logging, open_store
from scripts.settings import PgSettings

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force", action="store_true", help="apply even when nothing changed"
    )
    args = parser.parse_args(argv)
    configure_cli_logging()

    started = time.monotonic()
    settings = PgSettings.from_env()
    store = open_store(settings)
    changes = apply_definitions(store, force=args.force)
    logger.info(
        "project %s on %s: %d changes applied in %.1f s",
        store.project,
        settings.describe(),
        len(changes),
        time.monotonic() - started,
    )
    for change in changes:
        sys.stdout.write(f"{change}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
