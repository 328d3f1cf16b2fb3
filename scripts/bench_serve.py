"""`make bench-serve`: this service against `feast serve` on the same store.

Starts `python -m serving` and `feast serve` (its defaults, then with
`--max-requests 0`) on the materialized store of the configured database,
drives each with wrk for 15 s at 1 and at 32 connections (random known user
ids plus 1% unknown ones), measures requests/s, p50, p99, errors and the CPU
the server processes used per request (from /proc), times the batch route
with 100 users, samples one of our workers with py-spy, and writes it all to
BENCHMARKS.md. Needs `make materialize` (or `make demo`) first, and wrk
(`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from scripts.settings import PgSettings, export_env

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = REPO_ROOT / ".bench"
OUTPUT = REPO_ROOT / "BENCHMARKS.md"
FEATURE_SERVICE = "churn_model_v1"
# The demo's platform clock: the course data ends on 2024-02-29, and against
# the wall clock every snapshot would be past its TTL (served as nulls).
DEFAULT_NOW = "2024-03-01T00:00:00+00:00"
UNKNOWN_SHARE = 0.01
BATCH_SIZE = 100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NOTES_HEADING = "## Notes"

# wrk's Lua side: pick an id per request, count statuses per thread, and
# print them as one JSON line at the end (wrk's own summary lumps every
# non-2xx status together, and a 404 for an unknown id is a correct answer).
_LUA = """
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
local mode = "%(mode)s"
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(seed * 7919)
  statuses = {}
end
local function pick()
  if math.random() < %(unknown)s then
    return "unknown-" .. math.random(1, 100000000)
  end
  return ids[math.random(1, #ids)]
end
function request()
  if mode == "ours" then
    return wrk.format("GET", "/features/" .. pick())
  end
  if mode == "batch" then
    local chosen = {}
    for i = 1, %(batch)s do chosen[i] = '"' .. pick() .. '"' end
    return wrk.format("POST", "/features", {["Content-Type"] = "application/json"},
      '{"user_ids": [' .. table.concat(chosen, ",") .. ']}')
  end
  return wrk.format("POST", "/get-online-features",
    {["Content-Type"] = "application/json"},
    '{"feature_service": "%(service)s", "entities": {"user_id": ["' .. pick() .. '"]}}')
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = '"' .. status .. '": ' .. n end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
  io.write(string.format("PCTL %%f %%f %%f\\n", latency:percentile(50),
    latency:percentile(99), latency.max))
end
"""


class BenchError(RuntimeError):
    pass


@dataclass
class Run:
    target: str
    connections: int
    seconds: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]
    cpu_ms_per_request: float
    load_before: float


# --- helpers ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree_cpu_ticks(root_pid: int) -> int:
    """CPU used by a process and all its descendants, dead or alive, in ticks."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name may contain spaces; fields restart after ")".
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        # utime + stime, plus cutime + cstime: the CPU of children it already
        # reaped, so a worker that gunicorn recycled mid-run still counts.
        ticks[pid] = sum(int(value) for value in fields[11:15])
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def _descendants(root_pid: int) -> list[int]:
    result = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == root_pid:
                pid = int(stat.parent.name)
                result.append(pid)
                result.extend(_descendants(pid))
    return result


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"server exited ({process.returncode}); see {log}:\n"
                + log.read_text(errors="replace")[-2000:]
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    raise BenchError(f"no answer from {url} within {timeout:.0f} s; see {log}")


@contextlib.contextmanager
def _server(
    name: str, args: list[str], env: dict[str, str], ready_url: str
) -> Iterator[subprocess.Popen]:
    log = WORK_DIR / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_http(ready_url, process, log, timeout=180)
        logger.info("%s up (pid %d)", name, process.pid)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _parse_wrk(output: str) -> tuple[int, dict[str, int], float, float, int]:
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    statuses_line = re.search(r"STATUSES (\{.*\})", output).group(1)
    statuses = {k: int(v) for k, v in json.loads(statuses_line).items()}
    p50_us, p99_us, _ = (
        float(x) for x in re.search(r"PCTL (\S+) (\S+) (\S+)", output).groups()
    )
    socket_errors = 0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if match:
        socket_errors = sum(int(x) for x in match.groups())
    return requests, statuses, p50_us / 1000, p99_us / 1000, socket_errors


def _wrk(
    target: str,
    url: str,
    script: Path,
    connections: int,
    seconds: int,
    server_pid: int,
    ok_statuses: set[str],
) -> Run:
    threads = 1 if connections == 1 else 2
    load_before = os.getloadavg()[0]
    before = _tree_cpu_ticks(server_pid)
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(script),
            url,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    used = _tree_cpu_ticks(server_pid) - before
    requests, statuses, p50, p99, socket_errors = _parse_wrk(result.stdout)
    errors = socket_errors + sum(
        n for status, n in statuses.items() if status not in ok_statuses
    )
    run = Run(
        target=target,
        connections=connections,
        seconds=seconds,
        requests=requests,
        rps=requests / seconds,
        p50_ms=p50,
        p99_ms=p99,
        errors=errors,
        statuses=statuses,
        cpu_ms_per_request=1000 * used / CLOCK_TICKS / max(requests, 1),
        load_before=load_before,
    )
    logger.info(
        "%s c=%d: %.0f req/s p50 %.2f ms p99 %.2f ms errors %d cpu %.2f ms/req",
        target, connections, run.rps, p50, p99, errors, run.cpu_ms_per_request,
    )  # fmt: skip
    return run


def _write_lua(mode: str, ids_file: Path) -> Path:
    path = WORK_DIR / f"{mode}.lua"
    path.write_text(
        _LUA
        % {
            "ids": ids_file,
            "mode": mode,
            "unknown": UNKNOWN_SHARE,
            "batch": BATCH_SIZE,
            "service": FEATURE_SERVICE,
        }
    )
    return path


def _known_ids(settings: PgSettings) -> list[str]:
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(
            "select user_id from features.subscriptions_profile_snapshots"
            " where as_of = (select max(as_of)"
            " from features.subscriptions_profile_snapshots)"
        ).fetchall()
    if not rows:
        raise BenchError("no snapshot rows: run `make demo` (or the chain) first")
    return [row[0] for row in rows]


# --- profile ------------------------------------------------------------------

_CATEGORIES = (
    ("serving/", "service code (serving/)"),
    ("psycopg", "psycopg + pool (query, send/recv, row loading)"),
    ("sanic", "Sanic (HTTP parsing, routing, response writing)"),
    ("prometheus_client", "prometheus_client (metrics)"),
    ("protobuf", "protobuf (ValueProto decoding)"),
    ("feast/", "Feast (entity key serialization)"),
    ("asyncio", "asyncio / uvloop event loop"),
    ("uvloop", "asyncio / uvloop event loop"),
)


def _profile(worker_pid: int, seconds: int, url: str, script: Path) -> list[tuple]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        logger.warning("py-spy is not installed; skipping the profile")
        return []
    raw = WORK_DIR / "profile.txt"
    load = subprocess.Popen(
        ["wrk", "-t2", "-c32", f"-d{seconds + 4}s", "-s", str(script), url],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        subprocess.run(
            [
                py_spy,
                "record",
                "-p",
                str(worker_pid),
                "-d",
                str(seconds),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
            ],  # fmt: skip
            capture_output=True,
            check=True,
        )
    finally:
        load.wait()
    by_category: Counter = Counter()
    by_function: Counter = Counter()
    ours_inclusive: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf = frames[-1]
        by_function[leaf] += count
        for frame in set(frames):
            if "serving/" in frame:
                ours_inclusive[frame] += count
        label = next((name for key, name in _CATEGORIES if key in leaf), "other")
        by_category[label] += count
    categories = [(name, n / total) for name, n in by_category.most_common()]
    functions = [(name, n / total) for name, n in by_function.most_common(12)]
    inclusive = [(name, n / total) for name, n in ours_inclusive.most_common(8)]
    return [categories, functions, inclusive, total]


# --- report -------------------------------------------------------------------


def _machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    wrk_version = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0:1]
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, {' '.join(wrk_version) or 'wrk'}; "
        "server, PostgreSQL and wrk share the machine"
    )


def _row(run: Run) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(run.statuses.items()))
    return (
        f"| {run.target} | {run.connections} | {run.rps:,.0f} | {run.p50_ms:.2f} | "
        f"{run.p99_ms:.2f} | {run.errors} | {run.cpu_ms_per_request:.2f} | "
        f"{statuses} | {run.load_before:.1f} |"
    )


def write_report(
    runs: list[Run], batch: Run, profile: list, workers: int, command: str
) -> str:
    def find(target: str, connections: int) -> Run:
        return next(
            r for r in runs if r.target == target and r.connections == connections
        )

    ours32, ours1 = find("this service", 32), find("this service", 1)
    lines = [
        "# Benchmarks: online feature serving",
        "",
        f"Written by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Machine: {_machine()}.",
        f"- This service: `python -m serving` with WORKERS={workers}; "
        "`feast serve`: its defaults (1 worker, recycled every 1,000 requests), "
        "then `--max-requests 0`.",
        "- Load: wrk, 15 s per run, random known user ids from the latest "
        f"snapshot plus {UNKNOWN_SHARE:.0%} unknown ids; GET /features/{{id}} here, "
        f"POST /get-online-features with feature service {FEATURE_SERVICE} for "
        "Feast. Both read the same PostgreSQL online store (14 features, 4 views).",
        "- Errors: socket errors, timeouts and any status other than 200 (and 404 "
        "for unknown ids on this service). CPU/req: user+system CPU of the server "
        "process and its workers during the run, divided by requests (PostgreSQL's "
        "own CPU not included). Load: 1-minute load average before the run "
        "(other work on the machine skews a run taken under load).",
        "",
        "| target | conns | req/s | p50 ms | p99 ms | errors | CPU ms/req | "
        "statuses | load |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
        *(_row(run) for run in runs),
        "",
        "## Ratios (this service / feast serve)",
        "",
    ]
    for target in ("feast serve (default)", "feast serve --max-requests 0"):
        other32, other1 = find(target, 32), find(target, 1)
        lines.append(
            f"- vs {target}: {ours32.rps / max(other32.rps, 1e-9):.1f}x req/s at 32 "
            f"connections, {ours1.rps / max(other1.rps, 1e-9):.1f}x at 1; "
            f"{other32.cpu_ms_per_request / max(ours32.cpu_ms_per_request, 1e-9):.1f}x "
            "less CPU per request at 32."
        )
    lines += [
        "",
        "## Targets",
        "",
        f"- 32 connections, >= 5x feast serve (default) with 0 errors: "
        f"{ours32.rps / max(find('feast serve (default)', 32).rps, 1e-9):.1f}x, "
        f"{ours32.errors} errors.",
        f"- 1 connection, p99 < 5 ms: {ours1.p99_ms:.2f} ms.",
        f"- POST /features with {BATCH_SIZE} users, p99 < 20 ms (1 connection): "
        f"{batch.p99_ms:.2f} ms (p50 {batch.p50_ms:.2f} ms, {batch.rps:.0f} "
        f"batches/s, {batch.errors} errors).",
        "",
    ]
    if profile:
        categories, functions, inclusive, total = profile
        lines += [
            "## Where the time goes (py-spy, one worker at 32 connections)",
            "",
            f"{total} samples of the worker's Python stacks, attributed to the "
            "innermost frame:",
            "",
            *(f"- {name}: {share:.0%}" for name, share in categories),
            "",
            "Top functions by own samples:",
            "",
            *(f"- {share:.1%} `{name}`" for name, share in functions),
            "",
            "The service's own frames, including what they call:",
            "",
            *(f"- {share:.1%} `{name}`" for name, share in inclusive),
            "",
        ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each run")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="WORKERS for us"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if shutil.which("wrk") is None:
        logger.error("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
        return 1
    settings = export_env(PgSettings.from_env())
    env = {
        **os.environ,
        "STREAMFLOW_NOW": os.environ.get("STREAMFLOW_NOW") or DEFAULT_NOW,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    WORK_DIR.mkdir(exist_ok=True)
    try:
        ids = _known_ids(settings)
    except (BenchError, psycopg.Error) as error:
        logger.error("%s", error)
        return 1
    random.Random(1).shuffle(ids)
    ids_file = WORK_DIR / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    scripts = {mode: _write_lua(mode, ids_file) for mode in ("ours", "batch", "feast")}

    runs: list[Run] = []
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ours_env = {
        **env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(args.workers),
    }
    with _server(
        "serving", [sys.executable, "-m", "serving"], ours_env, f"{url}/ready"
    ) as proc:
        time.sleep(2)  # let every worker finish its startup
        _wrk("warm-up", url, scripts["ours"], 8, 3, proc.pid, {"200", "404"})
        for connections in (1, 32):
            runs.append(
                _wrk(
                    "this service",
                    url,
                    scripts["ours"],
                    connections,
                    args.seconds,
                    proc.pid,
                    {"200", "404"},
                )  # fmt: skip
            )
        batch = _wrk(f"POST /features x{BATCH_SIZE}", url, scripts["batch"], 1,
                     args.seconds, proc.pid, {"200"})  # fmt: skip
        # Sanic's children are its workers and a multiprocessing manager;
        # after the runs above the busiest one is a worker.
        children = _descendants(proc.pid)
        busiest = max(children, key=_tree_cpu_ticks, default=None)
        profile = _profile(busiest, 10, url, scripts["ours"]) if busiest else []

    feast = str(Path(sys.executable).with_name("feast"))
    for label, extra in (
        ("feast serve (default)", []),
        ("feast serve --max-requests 0", ["--max-requests", "0"]),
    ):
        port = _free_port()
        feast_url = f"http://127.0.0.1:{port}"
        command = [feast, "-c", str(REPO_ROOT / "feature_repo"), "serve",
                   "-h", "127.0.0.1", "-p", str(port), *extra]  # fmt: skip
        with _server(
            label.replace(" ", "_"), command, env, f"{feast_url}/health"
        ) as proc:
            _wrk("warm-up", feast_url, scripts["feast"], 8, 3, proc.pid, {"200"})
            for connections in (1, 32):
                runs.append(
                    _wrk(
                        label,
                        feast_url,
                        scripts["feast"],
                        connections,
                        args.seconds,
                        proc.pid,
                        {"200"},
                    )  # fmt: skip
                )

    report = write_report(runs, batch, profile, args.workers, "make bench-serve")
    notes = _kept_notes()
    OUTPUT.write_text(report + "\n" + (f"\n{notes}" if notes else ""))
    sys.stdout.write(report + "\n")
    logger.info("wrote %s", OUTPUT)
    return 0


def _kept_notes() -> str:
    """The hand-written "## Notes" section of the previous BENCHMARKS.md: the
    figures are regenerated, the reading of them is kept for a person to
    update."""
    try:
        text = OUTPUT.read_text()
    except OSError:
        return ""
    start = text.find(NOTES_HEADING)
    return text[start:] if start >= 0 else ""


if __name__ == "__main__":
    raise SystemExit(main())
