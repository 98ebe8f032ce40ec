"""The results store: one SQLite file of runs (an Environment and its Measurements).

Every run is written in one transaction, so an interrupted run (Ctrl-C, a crash, a full
disk) leaves nothing behind; WAL mode and a busy timeout let several processes write at
once without losing rows. The schema is versioned with PRAGMA user_version and upgraded
by the ordered MIGRATIONS on open.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import IO, Iterable

from .errors import ArgumentError, ChipfitError
from .measurement import Environment, Measurement

BUSY_TIMEOUT_MS = 30_000
RUN_KINDS = ("bench", "measure", "validate", "distributed")  # what writes runs: the commands of the same names

# MIGRATIONS[i] takes the schema from version i to i + 1; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    # v1: runs and their timed measurements.
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        device TEXT NOT NULL,
        created_at TEXT NOT NULL,
        environment TEXT NOT NULL
    );
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        device TEXT NOT NULL,
        precision TEXT NOT NULL,
        shape TEXT NOT NULL,
        flops REAL NOT NULL,
        bytes REAL NOT NULL,
        median_s REAL NOT NULL,
        min_s REAL NOT NULL,
        max_s REAL NOT NULL,
        repetitions INTEGER NOT NULL
    );
    CREATE INDEX measurements_run ON measurements(run_id);
    """,
    # v2: the catalog entry a run maps to; energy, steps (predicted, peak memory) and labels.
    """
    ALTER TABLE runs ADD COLUMN hardware_id TEXT NOT NULL DEFAULT '';
    UPDATE runs SET hardware_id = device;
    ALTER TABLE measurements ADD COLUMN label TEXT NOT NULL DEFAULT '';
    ALTER TABLE measurements ADD COLUMN energy_j REAL;
    ALTER TABLE measurements ADD COLUMN power_watts REAL;
    ALTER TABLE measurements ADD COLUMN power_method TEXT NOT NULL DEFAULT '';
    ALTER TABLE measurements ADD COLUMN energy_estimated INTEGER;
    ALTER TABLE measurements ADD COLUMN predicted_s REAL;
    ALTER TABLE measurements ADD COLUMN peak_memory_bytes INTEGER;
    ALTER TABLE measurements ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX measurements_kind ON measurements(device, kind, precision);
    """,
    # v3: calibrations fitted from the runs (chipfit.calibrate.Calibration as JSON).
    """
    CREATE TABLE calibrations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hardware_id TEXT NOT NULL,
        device TEXT NOT NULL,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX calibrations_hw ON calibrations(hardware_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_MEASUREMENT_COLUMNS = (
    "kind", "device", "precision", "shape", "flops", "bytes", "median_s", "min_s", "max_s",
    "repetitions", "label", "energy_j", "power_watts", "power_method", "energy_estimated",
    "predicted_s", "peak_memory_bytes", "extra",
)


def default_db_path() -> Path:
    """$CHIPFIT_DB, else $XDG_DATA_HOME/chipfit/results.sqlite (~/.local/share by default)."""
    if os.environ.get("CHIPFIT_DB"):
        return Path(os.environ["CHIPFIT_DB"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home).expanduser() / "chipfit" / "results.sqlite"


@dataclass(frozen=True)
class Run:
    """One stored run: its environment and how many measurements it holds."""

    id: int
    kind: str  # "bench", "measure", ...
    device: str
    hardware_id: str
    created_at: str
    environment: Environment
    measurement_count: int

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "device": self.device,
            "hardware_id": self.hardware_id,
            "created_at": self.created_at,
            "environment": self.environment.to_dict(),
            "measurement_count": self.measurement_count,
        }


class Store:
    """The results database at `path` (default: default_db_path()), created on first use.

    Only the default path's folder is created; a path the user gives must be in an existing folder.
    With `create` False (reading commands) the file must exist. A SQLite file of another program, or
    one whose pages fail PRAGMA quick_check, is refused on open, before any work is done.
    """

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        _check_location(self.path, create, default=path is None)
        try:
            if path is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ChipfitError(
                f"Results database {self.path} cannot be opened ({exc}); pass a writable file with --db."
            ) from exc
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA foreign_keys = ON")
        try:
            self._prepare()
        except ChipfitError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise ChipfitError(f"Results database {self.path} stayed locked by another process for "
                                   f"{BUSY_TIMEOUT_MS // 1000} s; wait for it to finish or pass another file "
                                   "with --db.") from exc
            raise ChipfitError(
                f"{self.path} is not a chipfit results database ({exc}); pass another file with --db."
            ) from exc

    def _prepare(self) -> None:
        """The file checked (intact, chipfit's), WAL mode and the current schema, waiting up to the busy
        timeout: while another process is setting up the same file, SQLite can answer 'database is locked'
        at once instead of calling its busy handler (changing the journal mode, recovering the WAL index)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                _check_integrity(self._db, self.path)
                _check_ours(self._db, self.path)
                self._db.execute("PRAGMA journal_mode = WAL")
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    # --- schema ---------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        if self.schema_version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")  # another process may be migrating: wait, then re-read
        try:
            version = self.schema_version
            if version > SCHEMA_VERSION:
                raise ChipfitError(
                    f"Results database {self.path} has schema version {version}, newer than this "
                    f"chipfit knows ({SCHEMA_VERSION}); upgrade chipfit or pass another file with --db."
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {step + 1}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # --- writing --------------------------------------------------------------------------
    def record_run(
        self, kind: str, device: str, environment: Environment, measurements: Iterable[Measurement]
    ) -> int:
        """Store a run and its measurements in one transaction; returns the run id.

        Any exception (KeyboardInterrupt included) while writing rolls the whole run back.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise ChipfitError(f"Results database {self.path} is not writable ({exc}); pass another --db.") from exc
        try:
            cur = self._db.execute(
                "INSERT INTO runs (kind, device, created_at, environment, hardware_id) VALUES (?, ?, ?, ?, ?)",
                (kind, device, environment.created_at, json.dumps(environment.to_dict()), environment.hardware_id),
            )
            run_id = cur.lastrowid
            placeholders = ", ".join("?" for _ in range(len(_MEASUREMENT_COLUMNS) + 1))
            sql = f"INSERT INTO measurements (run_id, {', '.join(_MEASUREMENT_COLUMNS)}) VALUES ({placeholders})"
            for m in measurements:
                self._db.execute(sql, (run_id, *_to_row(m)))
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # full disk, read-only file, ...
            self._db.execute("ROLLBACK")
            raise ChipfitError(
                f"Writing the run to {self.path} failed ({exc}); nothing was stored. Free space or pass another --db."
            ) from exc
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return run_id

    def save_calibration(self, hardware_id: str, device: str, created_at: str, data: dict) -> int:
        """Store one fitted calibration (a single-row transaction); returns its id."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "INSERT INTO calibrations (hardware_id, device, created_at, data) VALUES (?, ?, ?, ?)",
                (hardware_id, device, created_at, json.dumps(data)),
            )
        return cur.lastrowid

    # --- reading --------------------------------------------------------------------------
    def latest_calibration(self, hardware_id: str) -> dict | None:
        """The newest calibration stored for `hardware_id`, as saved, or None."""
        row = self._db.execute(
            "SELECT data FROM calibrations WHERE hardware_id = ? ORDER BY id DESC LIMIT 1", (hardware_id,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def runs(self, kind: str | None = None, device: str | None = None) -> list[Run]:
        """Stored runs, oldest first, optionally of one kind and/or one device."""
        if kind is not None and kind not in RUN_KINDS:
            raise ArgumentError(f"Run kind {kind!r} is not one chipfit stores; give one of {', '.join(RUN_KINDS)}.")
        where, args = _where(kind=kind, device=device, prefix="r.")
        rows = self._db.execute(
            "SELECT r.id, r.kind, r.device, r.hardware_id, r.created_at, r.environment, "
            "(SELECT COUNT(*) FROM measurements m WHERE m.run_id = r.id) "
            f"FROM runs r {where} ORDER BY r.id",
            args,
        ).fetchall()
        return [
            Run(id=r[0], kind=r[1], device=r[2], hardware_id=r[3], created_at=r[4],
                environment=_environment(json.loads(r[5])), measurement_count=r[6])
            for r in rows
        ]

    def run(self, run_id: int) -> Run:
        found = [r for r in self.runs() if r.id == run_id]
        if not found:
            raise ChipfitError(f"Run {run_id} is not in {self.path}; `chipfit results list` shows the stored runs.")
        return found[0]

    def measurements(
        self,
        run_id: int | None = None,
        kind: str | None = None,
        device: str | None = None,
        precision: str | None = None,
    ) -> list[Measurement]:
        """Stored measurements in the order written, filtered by any of the arguments."""
        where, args = _where(run_id=run_id, kind=kind, device=device, precision=precision)
        rows = self._db.execute(
            f"SELECT run_id, {', '.join(_MEASUREMENT_COLUMNS)} FROM measurements {where} ORDER BY id", args
        ).fetchall()
        return [_from_row(r) for r in rows]

    def export_csv(self, path_or_file: str | os.PathLike | IO[str]) -> int:
        """Write every measurement with its run's environment as CSV; returns the row count."""
        runs = {r.id: r for r in self.runs()}
        env_cols = [f.name for f in fields(Environment) if f.name not in ("device", "extra")]
        header = ["run_id", "run_kind", *_MEASUREMENT_COLUMNS, "achieved_flops_per_s", "achieved_bytes_per_s",
                  *env_cols]
        rows = self.measurements()
        own = not isinstance(path_or_file, io.IOBase) and not hasattr(path_or_file, "write")
        try:
            out = open(path_or_file, "w", newline="") if own else path_or_file
        except OSError as exc:
            raise ChipfitError(f"CSV file {path_or_file} cannot be written ({exc.strerror or exc}); give a path in a "
                               "writable folder, or - for standard output.") from None
        try:
            writer = csv.writer(out)
            writer.writerow(header)
            for m in rows:
                run = runs[m.run_id]
                env = run.environment.to_dict()
                writer.writerow([
                    m.run_id, run.kind, *_to_row(m), m.achieved_flops_per_s, m.achieved_bytes_per_s,
                    *(env[c] for c in env_cols),
                ])
        finally:
            if own:
                out.close()
        return len(rows)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_location(path: Path, create: bool, default: bool) -> None:
    """Refuse a folder, a missing file where reading, and a missing folder the user named."""
    if path.is_dir():
        raise ChipfitError(f"Results database {path} is a folder; give a file path with --db.")
    if path.exists():
        return
    if not create:
        raise ChipfitError(f"Results database {path} does not exist; run `chipfit bench` or `chipfit measure` to "
                           "make one, or give an existing file with --db.")
    if not default and not path.parent.is_dir():
        raise ChipfitError(f"Folder {path.parent} of results database {path.name} does not exist; create it first, "
                           "or give --db a path in an existing folder.")


def _check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """PRAGMA quick_check: a damaged page is found now, not after a long bench whose rows it would lose."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise ChipfitError(f"Results database {path} is damaged ({problems[0][:120]}); move it aside and let chipfit "
                           "start a new one, or give another file with --db (`sqlite3 FILE .recover` can save rows).")


def _check_ours(db: sqlite3.Connection, path: Path) -> None:
    """Refuse to add chipfit's tables to another program's SQLite file."""
    if db.execute("PRAGMA user_version").fetchone()[0]:
        return
    tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    foreign = [t for t in tables if not t.startswith("sqlite_")]
    if foreign:
        raise ChipfitError(f"{path} is a SQLite database of another program (tables {', '.join(foreign[:5])}), not "
                           "a chipfit results store; give chipfit its own file with --db.")


def _where(prefix: str = "", **filters) -> tuple[str, list]:
    used = [(k, v) for k, v in filters.items() if v is not None]
    if not used:
        return "", []
    return "WHERE " + " AND ".join(f"{prefix}{k} = ?" for k, _ in used), [v for _, v in used]


def _to_row(m: Measurement) -> tuple:
    return (
        m.kind, m.device, m.precision, json.dumps(m.shape, sort_keys=True), float(m.flops), float(m.bytes),
        float(m.median_s), float(m.min_s), float(m.max_s), int(m.repetitions), m.label, m.energy_j,
        m.power_watts, m.power_method, None if m.energy_estimated is None else int(m.energy_estimated),
        m.predicted_s, m.peak_memory_bytes, json.dumps(m.extra, sort_keys=True),
    )


def _from_row(r: tuple) -> Measurement:
    values = dict(zip(("run_id", *_MEASUREMENT_COLUMNS), r))
    values["shape"] = json.loads(values["shape"])
    values["extra"] = json.loads(values["extra"])
    if values["energy_estimated"] is not None:
        values["energy_estimated"] = bool(values["energy_estimated"])
    return Measurement(**values)


def _environment(d: dict) -> Environment:
    """An Environment from stored JSON; keys written by older versions are tolerated."""
    d = dict(d)
    d.setdefault("hardware_id", d.get("device", ""))
    values = {}
    for f in fields(Environment):
        if f.name in d:
            values[f.name] = d[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:
            values[f.name] = 0 if f.type == "int" else ""
    return Environment(**values)
