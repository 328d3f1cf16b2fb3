"""What the ingest reports when input is bad: where, and what is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    path: Path
    # 1-based as an editor shows it (the header is line 1); None when the
    # problem is the file as a whole (it is missing).
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        if self.column is not None:
            where += f" column '{self.column}'"
        return f"{where}: {self.message}"


class IngestError(Exception):
    """Input that cannot be loaded; nothing of the month it belongs to was."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems: tuple[Problem, ...] = ()
            message = problems
        else:
            self.problems = tuple(problems)
            message = "\n".join(str(problem) for problem in self.problems)
        super().__init__(message)
