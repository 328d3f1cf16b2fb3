"""The dbt quality gate in front of Feast (`make features`, `make materialize`).

dbt's project hooks (dbt_project/macros/audit.sql) record every invocation in
the database: `audit.dbt_invocations` (command, selection, the newest
`raw.month_loads.loaded_at` visible when it started, start and finish) and
`audit.dbt_results` (one row per node with its status). Feast may read the
snapshot tables only when the latest dbt invocation that could have changed
them, among those that saw the latest ingest, is a whole-project `dbt build`
or `dbt test` whose every node passed.

`python -m scripts.dbt_gate` checks the gate from the shell (exit status 1
with the reason when closed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from datetime import datetime

import psycopg

from scripts.settings import PgSettings

logger = logging.getLogger(__name__)

# `warn` is what a test configured with severity warn reports: by design it
# does not block.
GREEN_STATUSES = ("success", "pass", "warn")
# Commands that write the snapshot tables. A whole-project `test` vouches
# for them too; a narrowed `test`, `source freshness` and the like change
# nothing and are ignored.
WRITING_COMMANDS = ("build", "run", "seed", "snapshot")
# Failing nodes quoted in the message; the rest are counted.
MAX_LISTED = 10


class DbtGateError(RuntimeError):
    """The snapshot tables are not vouched for by a green dbt build."""


@dataclass(frozen=True)
class Invocation:
    invocation_id: str
    command: str
    selection: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class NodeResult:
    name: str
    resource_type: str
    status: str
    failures: int | None
    message: str | None

    def describe(self) -> str:
        detail = self.status
        if self.failures:
            detail += f", {self.failures} failing row{'s' * (self.failures != 1)}"
        elif self.message and self.status != "skipped":
            detail += f": {self.message.strip().splitlines()[0]}"
        return f"{self.resource_type} {self.name} ({detail})"


def require_green_build(settings: PgSettings) -> None:
    """Return when the latest ingest has been built and tested green.

    Raises DbtGateError naming the failing tests/models, or saying to run
    `make dbt` when no whole-project build/test ran after the last ingest."""
    with psycopg.connect(settings.conninfo()) as conn:
        latest_ingest = _latest_ingest(conn)
        invocation = _latest_relevant_invocation(conn, latest_ingest)
        if invocation is None:
            raise DbtGateError(
                "no dbt build has run since the latest ingest "
                f"(raw.month_loads.loaded_at {latest_ingest.isoformat()}) in "
                f"{settings.describe()}; run `make dbt`"
            )
        label = (
            f"dbt {invocation.command} {invocation.invocation_id} "
            f"(started {invocation.started_at.isoformat()})"
        )
        if invocation.selection:
            raise DbtGateError(
                f"the latest dbt invocation after the latest ingest, {label}, "
                f"covered only part of the project ({invocation.selection}); "
                "run `make dbt`"
            )
        if invocation.command not in ("build", "test"):
            raise DbtGateError(
                f"the latest dbt invocation after the latest ingest, {label}, "
                "changed tables without testing them; run `make dbt`"
            )
        if invocation.finished_at is None:
            raise DbtGateError(
                f"{label} has not recorded its results: it is still running or "
                "it crashed; wait for it or run `make dbt`"
            )
        results = _results(conn, invocation.invocation_id)
    if not results:
        raise DbtGateError(f"{label} ran no nodes; run `make dbt`")
    blocking = [r for r in results if r.status not in GREEN_STATUSES]
    if blocking:
        raise DbtGateError(_failure_message(label, blocking))
    logger.info(
        "dbt gate open: %s passed all %d nodes after the ingest of %s",
        label,
        len(results),
        latest_ingest.isoformat(),
    )


def _latest_ingest(conn: psycopg.Connection) -> datetime:
    row = conn.execute("select to_regclass('raw.month_loads') is not null").fetchone()
    if row is None or not row[0]:
        raise DbtGateError("no month has been ingested yet; run `make ingest`")
    row = conn.execute("select max(loaded_at) from raw.month_loads").fetchone()
    if row is None or row[0] is None:
        raise DbtGateError("raw.month_loads is empty; run `make ingest`")
    return row[0]


def _latest_relevant_invocation(
    conn: psycopg.Connection, latest_ingest: datetime
) -> Invocation | None:
    row = conn.execute("select to_regclass('audit.dbt_invocations') is not null")
    exists = row.fetchone()
    if exists is None or not exists[0]:
        # The hooks create the audit tables: dbt has never run here.
        return None
    # raw_loaded_at is what the run could see when it began, so a run that
    # overlapped an ingest still counts as having missed it.
    row = conn.execute(
        """
        select invocation_id, command, selection, started_at, finished_at
        from audit.dbt_invocations
        where
            raw_loaded_at >= %(latest_ingest)s
            and (
                command = any(%(writing)s)
                or (command = 'test' and selection is null)
            )
        order by started_at desc
        limit 1
        """,
        {"latest_ingest": latest_ingest, "writing": list(WRITING_COMMANDS)},
    ).fetchone()
    return Invocation(*row) if row is not None else None


def _results(conn: psycopg.Connection, invocation_id: str) -> list[NodeResult]:
    rows = conn.execute(
        """
        select node_name, resource_type, status, failures, message
        from audit.dbt_results
        where invocation_id = %s
        order by node
        """,
        [invocation_id],
    ).fetchall()
    return [NodeResult(*row) for row in rows]


def _failure_message(label: str, blocking: list[NodeResult]) -> str:
    # Failures and errors are the cause; skipped nodes only follow from them.
    causes = [r for r in blocking if r.status != "skipped"]
    skipped = len(blocking) - len(causes)
    listed = [f"  - {r.describe()}" for r in causes[:MAX_LISTED]]
    if len(causes) > MAX_LISTED:
        listed.append(f"  - ... and {len(causes) - MAX_LISTED} more")
    lines = [f"{label} did not pass; Feast must not read its tables:", *listed]
    if skipped:
        lines.append(f"  ({skipped} downstream node{'s' * (skipped != 1)} skipped)")
    lines.append(
        "Fix the data (re-ingest the month) or the models, then run `make dbt`."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.dbt_gate",
        description="Exit 0 when the latest ingest was built and tested green.",
    )
    parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        require_green_build(PgSettings.from_env())
    except DbtGateError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
