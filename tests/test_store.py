"""The results store: round-trip, migration, interrupted writes, concurrent writers, CSV."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import sqlite3

import pytest

from chipfit.errors import ChipfitError
from chipfit.measurement import Environment, Measurement
from chipfit.store import SCHEMA_VERSION, Store, default_db_path


def _env(device: str = "local-cpu") -> Environment:
    return Environment(
        device=device, device_name="Test CPU", hardware_id=device, threads=2, hostname="box",
        platform="Linux", python_version="3.11.0", torch_version="2.13.0", chipfit_version="0.1.0",
        created_at="2025-01-01T00:00:00+00:00", git_commit="abc123",
    )


def _matmul(n: int, median_s: float, precision: str = "fp32") -> Measurement:
    return Measurement(
        kind="matmul", device="local-cpu", precision=precision, shape={"m": n, "n": n, "k": n},
        flops=2.0 * n**3, bytes=3 * 4 * n * n, median_s=median_s, min_s=median_s * 0.9,
        max_s=median_s * 1.2, repetitions=10,
    )


def test_round_trip_keeps_every_field(tmp_path):
    m1 = _matmul(1024, 0.01)
    m2 = Measurement(
        kind="triad", device="local-cpu", precision="fp32", shape={"elements": 1000}, flops=2000.0,
        bytes=12000.0, median_s=1e-6, min_s=1e-6, max_s=2e-6, repetitions=50, label="triad",
        energy_j=0.5, power_watts=12.5, power_method="estimated: TDP x CPU utilisation",
        energy_estimated=True, predicted_s=1.1e-6, peak_memory_bytes=4096, extra={"threads": 2},
    )
    with Store(tmp_path / "r.sqlite") as store:
        run_id = store.record_run("bench", "local-cpu", _env(), [m1, m2])
        got = store.measurements(run_id=run_id)
        runs = store.runs()
    assert got == [m1.with_run(run_id), m2.with_run(run_id)]
    # 2 x 1024^3 FLOP in 10 ms
    assert got[0].achieved_flops_per_s == pytest.approx(2 * 1024**3 / 0.01)
    assert got[1].achieved_bytes_per_s == pytest.approx(12000 / 1e-6)
    assert [(r.id, r.kind, r.device, r.measurement_count) for r in runs] == [(run_id, "bench", "local-cpu", 2)]
    assert runs[0].environment == _env()


def test_filters_and_default_path(tmp_path, monkeypatch):
    with Store(tmp_path / "r.sqlite") as store:
        a = store.record_run("bench", "local-cpu", _env(), [_matmul(256, 1e-4), _matmul(256, 5e-5, "bf16")])
        b = store.record_run("measure", "cuda:0", _env("cuda:0"), [])
        assert [r.id for r in store.runs(kind="measure")] == [b]
        assert [r.id for r in store.runs(device="local-cpu")] == [a]
        assert [m.precision for m in store.measurements(precision="bf16")] == ["bf16"]
        assert store.measurements(kind="triad") == []
        with pytest.raises(ChipfitError, match="Run 99"):
            store.run(99)
    monkeypatch.delenv("CHIPFIT_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "chipfit" / "results.sqlite"
    monkeypatch.setenv("CHIPFIT_DB", str(tmp_path / "env.sqlite"))
    assert default_db_path() == tmp_path / "env.sqlite"
    Store().close()
    assert (tmp_path / "env.sqlite").exists()


def test_migrates_a_v1_database_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, device TEXT NOT NULL,
                           created_at TEXT NOT NULL, environment TEXT NOT NULL);
        CREATE TABLE measurements (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL,
            kind TEXT NOT NULL, device TEXT NOT NULL, precision TEXT NOT NULL, shape TEXT NOT NULL,
            flops REAL NOT NULL, bytes REAL NOT NULL, median_s REAL NOT NULL, min_s REAL NOT NULL,
            max_s REAL NOT NULL, repetitions INTEGER NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    old_env = {"device": "local-cpu", "threads": 4, "hostname": "old", "torch_version": "2.4.0"}
    db.execute("INSERT INTO runs VALUES (1, 'bench', 'local-cpu', '2024-06-01T00:00:00+00:00', ?)",
               (json.dumps(old_env),))
    db.execute("INSERT INTO measurements VALUES (1, 1, 'copy', 'local-cpu', 'fp32', '{\"elements\": 8}', "
               "0, 64, 2.0, 1.0, 3.0, 5)")
    db.commit()
    db.close()

    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 3
        assert store.latest_calibration("local-cpu") is None
        (run,) = store.runs()
        assert (run.id, run.hardware_id, run.environment.threads, run.environment.hostname) == (1, "local-cpu", 4, "old")
        (m,) = store.measurements()
        assert (m.kind, m.shape, m.bytes, m.median_s, m.energy_j, m.label, m.extra) == (
            "copy", {"elements": 8}, 64.0, 2.0, None, "", {})
        assert m.achieved_bytes_per_s == 32.0
        store.record_run("bench", "local-cpu", _env(), [_matmul(64, 1e-5)])
        assert len(store.measurements()) == 2


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ChipfitError, match="newer than this chipfit"):
        Store(path)


def test_interrupted_run_leaves_nothing(tmp_path):
    def interrupted():
        yield _matmul(128, 1e-4)
        raise KeyboardInterrupt  # Ctrl-C after one measurement was inserted

    with Store(tmp_path / "r.sqlite") as store:
        store.record_run("bench", "local-cpu", _env(), [_matmul(64, 1e-5)])
        with pytest.raises(KeyboardInterrupt):
            store.record_run("bench", "local-cpu", _env(), interrupted())
        assert len(store.runs()) == 1
        assert len(store.measurements()) == 1
        # the store is still usable afterwards
        store.record_run("bench", "local-cpu", _env(), [_matmul(32, 1e-6)])
        assert [r.measurement_count for r in store.runs()] == [1, 1]


def _writer(path: str, tag: int, n: int) -> None:
    with Store(path) as store:
        for i in range(n):
            store.record_run("bench", f"dev{tag}", _env(f"dev{tag}"), [_matmul(8 + i, 1e-6)])


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    n = 100
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, tag, n)) for tag in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with Store(path) as store:
        assert len(store.runs(device="dev0")) == n
        assert len(store.runs(device="dev1")) == n
        assert len(store.measurements()) == 2 * n


class _LockedAtFirst:
    """A connection whose first `times` journal-mode switches find the file locked, as SQLite
    reports while another process is switching the same new file."""

    def __init__(self, db, times):
        self.db, self.times, self.tries = db, times, 0

    def execute(self, sql, *args):
        if sql.startswith("PRAGMA journal_mode"):
            self.tries += 1
            if self.tries <= self.times:
                raise sqlite3.OperationalError("database is locked")
        return self.db.execute(sql, *args)


def test_opening_waits_while_another_process_sets_the_file_up(tmp_path, monkeypatch):
    with Store(tmp_path / "r.sqlite") as store:
        store._db = _LockedAtFirst(store._db, times=3)
        store._prepare()
        assert store._db.tries == 4
        monkeypatch.setattr("chipfit.store.BUSY_TIMEOUT_MS", 0)
        store._db = _LockedAtFirst(store._db.db, times=1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store._prepare()
        store._db = store._db.db


def test_export_csv(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        run_id = store.record_run("bench", "local-cpu", _env(), [_matmul(100, 0.002)])
        buf = io.StringIO()
        assert store.export_csv(buf) == 1
        assert store.export_csv(tmp_path / "out.csv") == 1
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows == list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
    (row,) = rows
    assert (row["run_id"], row["kind"], row["precision"], row["hostname"]) == (str(run_id), "matmul", "fp32", "box")
    assert float(row["achieved_flops_per_s"]) == pytest.approx(2e6 / 0.002)


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(ChipfitError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ChipfitError, match="not a chipfit results database"):
        Store(junk)


def test_calibration_round_trip_keeps_the_newest(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save_calibration("local-cpu", "local-cpu", "2026-01-01T00:00:00+00:00", {"memory_efficiency": 0.5})
        store.save_calibration("local-cpu", "local-cpu", "2026-01-02T00:00:00+00:00", {"memory_efficiency": 0.7})
        store.save_calibration("other", "cuda:0", "2026-01-02T00:00:00+00:00", {"memory_efficiency": 0.9})
        assert store.latest_calibration("local-cpu") == {"memory_efficiency": 0.7}
        assert store.latest_calibration("nvidia-h100-sxm5-80gb") is None
