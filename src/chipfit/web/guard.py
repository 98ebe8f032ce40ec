"""What protects the dashboard and its user from a request: where it may come from, what it may cost.

- Host: a request must name the address the server is bound to, or a name the user allowed
  (`chipfit serve --allow-host NAME`), so a page on another site cannot reach it by DNS rebinding.
- Origin: a state-changing request (POST, PUT, PATCH, DELETE) from a browser must come from the
  dashboard's own page; cross-site form posts and fetches are refused with 403.
- Traces run in a worker process with a wall-clock and memory limit; one that passes either is
  killed and answered 503, so no request holds the trace lock or the server's memory for long.
- Messages name files by their base name only, never by a path on the server.
- Upload folders carry the server's process id; folders of servers no longer running are removed
  at start, and the server's own at exit.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ChipfitError

TRACE_TIMEOUT_S = 45.0  # a request is answered within a minute
TRACE_MEMORY_BYTES = 4 * 2**30  # resident memory of one trace's worker
POLL_S = 0.05
STARTUP_S = 120.0  # the forkserver imports torch once, before its first worker; not counted as the trace's time
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
UPLOAD_PREFIX = "chipfit-uploads-"
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/(),;:]+/)+([^\s'\"/(),;:]*)")


class TraceLimit(ChipfitError):
    """A trace passed its time or memory limit and was stopped (HTTP 503)."""


class RequestRefused(ChipfitError):
    """A request from a host or origin the server does not answer (HTTP 403)."""


def public(text: str) -> str:
    """`text` with every absolute path replaced by its base name: messages never show server paths."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "(a folder)", text)


# --- where a request may come from ----------------------------------------------------------------
def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may give: the bound address, loopback names when bound to loopback or to all
    interfaces, and the names the user allowed."""
    names = {bound.strip("[]").lower(), *(n.strip().lower() for n in extra if n.strip())}
    if bound in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::"):
        names.update(n.strip("[]") for n in LOOPBACK_NAMES)
    return frozenset(names)


def _host_name(value: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(method: str, headers, hosts: frozenset[str] | None) -> str | None:
    """Why a request is refused (403), or None. `hosts` None: no Host check (an app embedded elsewhere)."""
    host = _host_name(headers.get("host", ""))
    if hosts is not None and host not in hosts:
        return (f"Host {host or '(none)'!r} is not this dashboard's address; open it at the address `chipfit serve` "
                "printed, or start it with --allow-host NAME.")
    if method.upper() not in STATE_CHANGING:
        return None
    if headers.get("sec-fetch-site", "") == "cross-site":
        return "A request from another site cannot change this dashboard; use the dashboard's own page."
    origin = headers.get("origin")
    if origin is not None:
        origin_host = _host_name(re.sub(r"^[a-z][a-z0-9+.-]*://", "", origin.lower()).split("/", 1)[0])
        same = origin_host == host if hosts is None else origin_host in hosts and origin_host == host
        if origin == "null" or not same:
            return (f"A request from origin {origin!r} cannot change this dashboard; use the dashboard's own page "
                    "(its address must be the one in the browser's bar).")
    return None


# --- traces in a worker process -------------------------------------------------------------------
def _context():
    """forkserver with chipfit's tracer preloaded: each worker forks from a process that imported torch but
    never ran it (forking the server itself, whose threads hold locks, is not safe)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["chipfit.workload"])
    return ctx


def _child(conn, fn: Callable, args: tuple, kwargs: dict) -> None:
    try:
        conn.send(("started", None))
        conn.send(("ok", fn(*args, **kwargs)))
    except ChipfitError as exc:
        conn.send(("error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - the parent words it; nothing may escape a worker
        conn.send(("crash", f"{type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        conn.close()


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_limited(fn: Callable, *args: Any, timeout_s: float = TRACE_TIMEOUT_S,
                memory_bytes: int = TRACE_MEMORY_BYTES, stopping: Callable[[], bool] = lambda: False,
                **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a worker process, killed when it runs past `timeout_s`, holds more than
    `memory_bytes` resident, or `stopping()` turns true (the server shuts down). Raises TraceLimit then."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_child, args=(send, fn, args, kwargs), daemon=True)
    worker.start()
    send.close()
    deadline = time.monotonic() + STARTUP_S  # the first worker waits for the forkserver to import torch
    started = False
    try:
        while True:
            if receive.poll(POLL_S):
                status, value = receive.recv()
                if status != "started":
                    break
                started, deadline = True, time.monotonic() + timeout_s
                continue
            if not worker.is_alive() and not receive.poll(0):
                raise ChipfitError("The model could not be profiled: its worker ended without an answer; "
                                   "profile it with the chipfit command line to see why.")
            if time.monotonic() > deadline:
                if not started:
                    raise TraceLimit(f"The profiling worker did not start within {STARTUP_S:.0f} s; the machine is "
                                     "overloaded, try again later.")
                raise TraceLimit(f"Profiling the model took over {timeout_s:.0f} s, the dashboard's limit per "
                                 "request; profile it with the chipfit command line instead.")
            if _resident_bytes(worker.pid) > memory_bytes:
                raise TraceLimit(f"Profiling the model took over {memory_bytes / 2**30:.0f} GiB of memory, the "
                                 "dashboard's limit per request; profile it with the chipfit command line instead.")
            if stopping():
                raise TraceLimit("The dashboard is shutting down; the request was stopped.")
    except EOFError:
        raise ChipfitError("The model could not be profiled: its worker ended without an answer; profile it with "
                           "the chipfit command line to see why.") from None
    finally:
        if worker.is_alive():
            worker.kill()
        worker.join(5)
        receive.close()
    if status == "ok":
        return value
    if status == "error":
        raise ChipfitError(value)
    raise ChipfitError(f"The model could not be profiled ({value}).")


# --- upload folders -------------------------------------------------------------------------------
def upload_folder() -> Path:
    """A new upload folder tagged with this process id, after removing those of servers that have ended."""
    root = Path(tempfile.gettempdir())
    for old in root.glob(UPLOAD_PREFIX + "*"):
        pid = old.name[len(UPLOAD_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to clean
        return True
    return True
