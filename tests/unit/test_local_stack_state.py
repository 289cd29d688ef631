"""LocalStack's state.json bookkeeping: which records are stale, what is kept. No process starts."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cdc.local.processes import ProcessRecord, free_port
from cdc.local.stack import LocalStack, StackState


def _dead(name: str) -> ProcessRecord:
    # our own pid with another start time: what a recycled pid looks like, never "ours"
    return ProcessRecord(name=name, pid=os.getpid(), create_time=1.0)


def _write_state(state_dir: Path, state: StackState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(state.to_json()))


def _recorded(state_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    return data


def test_all_dead_records_are_reported_stale_and_cleaned_from_the_state_file(
    tmp_path: Path,
) -> None:
    pg_port, kafka_port = free_port(), free_port()
    records = {n: _dead(n) for n in ("postgres", "broker", "debezium")}
    _write_state(tmp_path, StackState(pg_port=pg_port, kafka_port=kafka_port, processes=records))

    stack = LocalStack(tmp_path)

    assert stack.stale_cleaned == ["postgres", "broker", "debezium"]
    assert stack.state.processes == {}
    assert _recorded(tmp_path)["processes"] == {}
    # the recorded (free) ports are kept, so the URLs printed before the crash stay valid
    assert (stack.state.pg_port, stack.state.kafka_port) == (pg_port, kafka_port)
    assert _recorded(tmp_path)["pg_port"] == pg_port


def test_explicit_ports_win_over_the_recorded_ones_after_a_crash(tmp_path: Path) -> None:
    _write_state(tmp_path, StackState(pg_port=1, kafka_port=2, processes={"x": _dead("x")}))
    stack = LocalStack(tmp_path, pg_port=15432, kafka_port=19999)
    assert (stack.state.pg_port, stack.state.kafka_port) == (15432, 19999)
    assert stack.stale_cleaned == ["x"]


def test_a_live_record_keeps_the_state_and_only_dead_ones_are_cleaned(tmp_path: Path) -> None:
    alive = ProcessRecord.of("broker", os.getpid())
    state = StackState(
        pg_port=1111, kafka_port=2222, processes={"postgres": _dead("postgres"), "broker": alive}
    )
    _write_state(tmp_path, state)

    stack = LocalStack(tmp_path, pg_port=3333)

    assert stack.state.pg_port == 1111  # something runs: its ports are kept
    assert stack.stale_cleaned == []
    assert stack.clean_stale() == ["postgres"]
    assert stack.stale_cleaned == ["postgres"]
    assert list(stack.state.processes) == ["broker"]
    assert list(_recorded(tmp_path)["processes"]) == ["broker"]


def test_no_state_file_means_nothing_stale_and_nothing_written(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "fresh")
    assert stack.stale_cleaned == []
    assert stack.state.processes == {}
    assert not (tmp_path / "fresh").exists()


def test_cluster_lives_where_the_postgres_user_can_reach_it() -> None:
    base = Path(tempfile.mkdtemp())  # not pytest's tmp_path: that sits under a 0700 folder
    os.chmod(base, 0o755)
    open_dir, private = base / "open", base / "private"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    private.mkdir()
    os.chmod(private, 0o700)
    try:
        _check_cluster_dirs(open_dir, private)
    finally:
        shutil.rmtree(base)


def _check_cluster_dirs(open_dir: Path, private: Path) -> None:
    from cdc.local.postgres import cluster_dir, traversable_by_others

    assert traversable_by_others(open_dir / "not-made-yet")
    assert not traversable_by_others(private / "state")
    assert cluster_dir(open_dir / "state") == (open_dir / "state").resolve() / "postgres"
    moved = cluster_dir(private / "state")
    if os.geteuid() == 0:  # PostgreSQL runs as another user, who can't enter `private`
        assert moved.parent == Path(tempfile.gettempdir())
        assert moved == cluster_dir(private / "state")  # stable for one state dir
        assert moved != cluster_dir(private / "other")
    else:
        assert moved == (private / "state").resolve() / "postgres"


def test_the_config_debezium_ran_with_outlives_a_crash_and_shows_in_status(
    tmp_path: Path,
) -> None:
    config = str(tmp_path / "conf" / "cdc.yaml")
    state = StackState(
        pg_port=free_port(),
        kafka_port=free_port(),
        processes={"debezium": _dead("debezium")},
        debezium_config=config,
    )
    _write_state(tmp_path, state)

    stack = LocalStack(tmp_path)

    assert stack.stale_cleaned == ["debezium"]
    # `cdc local restart debezium` without -c starts it again with the same config
    assert stack.state.debezium_config == config
    assert _recorded(tmp_path)["debezium_config"] == config
    debezium = next(s for s in stack.status() if s.name == "debezium")
    assert not debezium.running
    assert debezium.detail == f"{tmp_path / 'debezium' / 'debezium.log'} (config {config})"


def test_a_state_file_without_a_debezium_config_still_loads(tmp_path: Path) -> None:
    alive = ProcessRecord.of("broker", os.getpid())
    data = StackState(pg_port=1111, kafka_port=2222, processes={"broker": alive}).to_json()
    del data["debezium_config"]  # written before the field existed
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "state.json").write_text(json.dumps(data))
    stack = LocalStack(tmp_path)
    assert stack.state.debezium_config is None
    assert next(s for s in stack.status() if s.name == "debezium").detail == str(
        tmp_path / "debezium" / "debezium.log"
    )
