"""The local stack as one object: start, inspect and stop PostgreSQL, the broker and Debezium.

State lives in one directory (``state.json`` plus each component's data and log). Every process
is recorded by pid and start time and stopped by pid. A second ``up`` reports what already runs
instead of starting twins; records of processes that died (a crash, a reboot) are detected as
stale and cleaned before anything starts again. Used by ``cdc local``, ``cdc demo`` and the
pytest fixtures alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cdc.local.broker import LocalBroker
from cdc.local.postgres import LocalPostgres, cluster_dir
from cdc.local.processes import ProcessRecord, free_port, port_open, wait_for_port

DEFAULT_PG_PORT = 54329
DEFAULT_KAFKA_PORT = 19092
COMPONENTS = ("postgres", "broker", "debezium")


def _pick_port(preferred: int | None, default: int) -> int:
    if preferred is not None:
        return preferred
    return default if not port_open(default) else free_port()


@dataclass
class StackState:
    pg_port: int
    kafka_port: int
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    database: str = "postgres"
    # the cdc.yaml Debezium was last started with (by `cdc local up -c` / `restart`), if any:
    # `cdc local restart debezium` uses it when given no config
    debezium_config: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pg_port": self.pg_port,
            "kafka_port": self.kafka_port,
            "database": self.database,
            "debezium_config": self.debezium_config,
            "processes": {k: v.to_json() for k, v in self.processes.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        return cls(
            pg_port=int(data["pg_port"]),
            kafka_port=int(data["kafka_port"]),
            database=str(data.get("database", "postgres")),
            debezium_config=data.get("debezium_config"),
            processes={k: ProcessRecord(**v) for k, v in data.get("processes", {}).items()},
        )


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    detail: str


class LocalStack:
    """PostgreSQL (logical decoding), Tansu and the embedded Debezium engine in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        pg_port: int | None = None,
        kafka_port: int | None = None,
        database: str = "postgres",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.stale_cleaned: list[str] = []
        loaded = self._load()
        if loaded is not None and any(p.alive() for p in loaded.processes.values()):
            self.state = loaded  # something runs: keep its ports
        else:
            # nothing runs: every record left (a crash, a reboot) is stale; reuse the recorded
            # ports when free, so the URLs printed before the crash stay valid
            self.state = StackState(
                pg_port=_pick_port(pg_port, loaded.pg_port if loaded else DEFAULT_PG_PORT),
                kafka_port=_pick_port(
                    kafka_port, loaded.kafka_port if loaded else DEFAULT_KAFKA_PORT
                ),
                database=database,
                debezium_config=loaded.debezium_config if loaded else None,
            )
            if loaded is not None and loaded.processes:
                self.stale_cleaned.extend(loaded.processes)
                self._save()
        self.postgres = LocalPostgres(cluster_dir(self.state_dir), self.state.pg_port)
        self.broker = LocalBroker(self.state_dir / "broker", self.state.kafka_port)

    # ------------------------------------------------------------------ state
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def debezium_dir(self) -> Path:
        return self.state_dir / "debezium"

    @property
    def debezium_offsets(self) -> Path:
        return self.debezium_dir / "offsets.dat"

    @property
    def debezium_log(self) -> Path:
        return self.debezium_dir / "debezium.log"

    def _load(self) -> StackState | None:
        try:
            return StackState.from_json(json.loads((self.state_dir / "state.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return None

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state.to_json(), indent=2))
        os.replace(tmp, self.state_file)

    def clean_stale(self) -> list[str]:
        """Forget records of processes that are gone; return their names."""
        stale = [n for n, p in self.state.processes.items() if not p.alive()]
        for name in stale:
            del self.state.processes[name]
        if stale:
            self._save()
        self.stale_cleaned.extend(stale)
        return stale

    def running(self, name: str) -> bool:
        record = self.state.processes.get(name)
        return record is not None and record.alive()

    # -------------------------------------------------------------- addresses
    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def pg_url(self, database: str | None = None) -> str:
        return self.postgres.url(database or self.state.database)

    # --------------------------------------------------------------- lifecycle
    def up(self) -> list[str]:
        """Start PostgreSQL and the broker unless they run; return what was started."""
        self.clean_stale()
        started: list[str] = []
        if not self.running("postgres"):
            self.state.processes["postgres"] = self.postgres.start()
            self._save()
            started.append("postgres")
            self._ensure_database()
        if not self.running("broker"):
            # the broker keeps topics in memory: a new broker means Debezium must start over
            self.stop_debezium()
            self._reset_debezium_state()
            self.state.processes["broker"] = self.broker.start()
            self._save()
            started.append("broker")
        return started

    def _ensure_database(self) -> None:
        if self.state.database == "postgres":
            return
        with psycopg.connect(self.postgres.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.state.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.state.database}"')

    def _reset_debezium_state(self) -> None:
        """Forget Debezium's offsets and drop its slots so the next start snapshots afresh."""
        if self.debezium_offsets.exists():
            self.debezium_offsets.unlink()
        if not self.running("postgres"):
            return
        with psycopg.connect(self.pg_url(), autocommit=True) as conn:
            slots = conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
                " AND NOT active"
            ).fetchall()
            for (slot,) in slots:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))

    def start_debezium(
        self, properties: dict[str, str], *, partitions: int = 1, config_path: Path | None = None
    ) -> ProcessRecord:
        """Run the Debezium connector process with ``properties`` (see cdc.source.connector);
        ``config_path``: the cdc.yaml they come from, recorded for status and restarts."""
        if self.running("debezium"):
            return self.state.processes["debezium"]
        self.debezium_dir.mkdir(parents=True, exist_ok=True)
        props_file = self.debezium_dir / "connector.json"
        props_file.write_text(json.dumps(properties, indent=2))
        os.chmod(props_file, 0o600)  # holds the database password
        with open(self.debezium_log, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cdc.local.debezium",
                    "--properties",
                    str(props_file),
                    "--bootstrap",
                    self.bootstrap_servers,
                    "--partitions",
                    str(partitions),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.debezium_dir,  # the engine's log4j writes logs/ under its cwd
            )
        record = ProcessRecord.of("debezium", proc.pid)
        self.state.processes["debezium"] = record
        self.state.debezium_config = None if config_path is None else str(config_path)
        self._save()
        return record

    def stop_debezium(self, *, kill: bool = False) -> None:
        record = self.state.processes.pop("debezium", None)
        if record is not None:
            record.stop(timeout=30, sig=9 if kill else 15)
            self._save()

    def restart_postgres(self, *, timeout: float = 60) -> ProcessRecord:
        """Stop PostgreSQL by pid (fast shutdown: sessions and walsenders are cut) and start it
        again on the same port and data directory; the new postmaster is recorded."""
        record = self.state.processes.pop("postgres", None)
        if record is not None:
            LocalPostgres.stop(record)
            self._save()
        self.state.processes["postgres"] = self.postgres.start(timeout=timeout)
        self._save()
        return self.state.processes["postgres"]

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop everything by pid (Debezium first); with ``purge`` delete the state too."""
        stopped = []
        if "debezium" in self.state.processes:
            self.stop_debezium()
            stopped.append("debezium")
        broker = self.state.processes.pop("broker", None)
        if broker is not None:
            broker.stop()
            stopped.append("broker")
        pg = self.state.processes.pop("postgres", None)
        if pg is not None:
            LocalPostgres.stop(pg)
            stopped.append("postgres")
        self._save()
        if purge:
            self.postgres.destroy()  # its cluster may live outside state_dir (cluster_dir)
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return stopped

    def status(self) -> list[ComponentStatus]:
        self.clean_stale()
        details = {
            "postgres": self.pg_url(),
            "broker": self.bootstrap_servers,
            "debezium": str(self.debezium_log)
            + (f" (config {self.state.debezium_config})" if self.state.debezium_config else ""),
        }
        out = []
        for name in COMPONENTS:
            record = self.state.processes.get(name)
            out.append(
                ComponentStatus(
                    name=name,
                    running=record is not None and record.alive(),
                    pid=record.pid if record else None,
                    detail=details[name],
                )
            )
        return out

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for_port(self.state.pg_port, timeout, "PostgreSQL")
        wait_for_port(self.state.kafka_port, timeout, "the broker")
