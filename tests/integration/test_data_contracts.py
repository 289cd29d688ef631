"""Data contracts on the real chain (PostgreSQL -> Debezium -> broker -> consumer -> DuckDB).

Each `on_violation` mode, with violating and valid changes streamed together:

* ``quarantine``: the failing rows wait in ``_cdc.quarantine`` with the check that failed named,
  later changes of their keys wait behind them, valid rows apply and the stream goes on; after
  the check is fixed, ``cdc quarantine replay`` applies them in their original order (an scd2
  table, so the order shows in its versions) and the warehouse equals the source;
* ``dlq``: the failing rows go to the table's dead-letter topic with the checks in a header;
* ``fail``: the consumer stops with a message naming table, key, check and offset, and no offset
  moves; once the check is fixed a restart applies everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from stack_support import read_topic

from cdc.config import Config
from cdc.consumer.dlq import H_CHECKS, H_ERROR_CLASS, H_OFFSET
from cdc.consumer.loop import ReplicationStoppedError
from cdc.local.pipeline import ReplicatorThread, compare_all
from cdc.runtime import open_warehouse
from warehouse.base import TableTarget

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

STRICT_EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
RELAXED_EMAIL = r"^[^@\s]+@[^@\s]+$"
EMAIL_CHECK = f"email: pattern {STRICT_EMAIL}"
BALANCE_CHECK = "balance: >= 0"

ACCOUNTS_DDL = """
CREATE TABLE accounts (id int PRIMARY KEY, email text, balance numeric(10,2), note text);
INSERT INTO accounts SELECT g, 'user' || g || '@example.com', g * 10, 'seed'
    FROM generate_series(1, 10) g;
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes VALUES (1, 'seed');
"""


def _accounts(
    on_violation: str, *, email: str = STRICT_EMAIL, balance_min: int = 0, mode: str = "mirror"
) -> list[dict[str, Any]]:
    return [
        {
            "name": "public.accounts",
            "mode": mode,
            "checks": [
                {"column": "email", "not_null": True, "pattern": email},
                {"column": "balance", ">=": balance_min},
            ],
            "on_violation": on_violation,
        },
        {"name": "public.notes"},
    ]


def _relaxed_config(p: Pipeline, tables: list[dict[str, Any]]) -> tuple[Config, Path]:
    """The same pipeline with another contract, written next to the first cdc.yaml."""
    return p.configure(tables, file="cdc.relaxed.yaml"), p.workdir / "cdc.relaxed.yaml"


def _cdc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _headers(msg: Any) -> dict[str, str]:
    raw = msg.headers() or []
    return {k: v.decode() if isinstance(v, bytes) else (v or "") for k, v in raw}


def _target(config: Config) -> TableTarget:
    return config.table_target(config.table("accounts"))


def _accounts_rows(config: Config) -> dict[int, dict[str, Any]]:
    warehouse = open_warehouse(config)
    try:
        return {r["id"]: r for r in warehouse.fetch_table(_target(config))}
    finally:
        warehouse.close()


def _audit_commit_times(p: Pipeline, key: int) -> list[datetime]:
    rows = p.sql(
        "SELECT pg_xact_commit_timestamp(xmin) FROM accounts_log WHERE id = %s ORDER BY seq",
        [key],
    )
    return [r[0] for r in rows]


AUDIT = """
CREATE TABLE accounts_log (seq bigserial PRIMARY KEY, id int, email text, balance numeric(10,2));
CREATE FUNCTION accounts_log_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts_log (id, email, balance) VALUES (NEW.id, NEW.email, NEW.balance);
    RETURN NULL;
END $$;
CREATE TRIGGER accounts_log AFTER INSERT OR UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_log_fn();
"""


def test_violations_wait_in_quarantine_valid_rows_flow_and_replay_applies_them_in_order(
    pipeline: Pipeline,
) -> None:
    pipeline.sql(ACCOUNTS_DDL)
    pipeline.sql(AUDIT)
    config = pipeline.configure(_accounts("quarantine", mode="scd2"), linger_ms=50)
    cfg_path = str(pipeline.workdir / "cdc.yaml")
    topic = config.topic_for(config.table("accounts"))
    pipeline.start_debezium()
    stats = pipeline.replicate_until_caught_up()
    assert stats.quarantined == 0
    pipeline.assert_equal_to_source()

    # violations, later changes of the same keys, and valid changes, one transaction each;
    # every change is checked on the whole row it leaves
    for statement in (
        "INSERT INTO accounts VALUES (11, 'staff11@intranet', 5, 'new')",  # email fails
        "UPDATE accounts SET balance = 6 WHERE id = 11",  # the row's email still fails
        "UPDATE accounts SET balance = -5, note = 'refund' WHERE id = 1",  # balance fails
        "UPDATE accounts SET email = 'renamed1@example.com' WHERE id = 1",  # balance still -5
        "UPDATE accounts SET balance = 7 WHERE id = 1",  # passes: held behind the others
        "INSERT INTO accounts VALUES (12, 'user12@example.com', 12, 'valid')",
        "UPDATE accounts SET balance = 21 WHERE id = 2",
        "INSERT INTO notes VALUES (2, 'another table')",
    ):
        pipeline.sql(statement)
    stats = pipeline.replicate_until_caught_up()
    assert stats.failed_checks == {f"accounts: {EMAIL_CHECK}": 2, f"accounts: {BALANCE_CHECK}": 2}
    assert stats.quarantined == 4
    assert stats.held == 1
    assert stats.dead_letters == 0 and not stats.parked

    rows = _accounts_rows(config)
    assert 11 not in rows  # nothing that fails a check reaches the table
    assert (rows[1]["email"], rows[1]["balance"]) == ("user1@example.com", 10)  # before the break
    assert rows[12]["note"] == "valid" and rows[2]["balance"] == 21  # valid changes applied
    listed = _cdc("quarantine", "list", "--json", "--config", cfg_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    quarantined = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    assert [(q["key"], q["reason"], q["checks"]) for q in quarantined] == [
        ([11], "violation", [EMAIL_CHECK]),
        ([11], "violation", [EMAIL_CHECK]),
        ([1], "violation", [BALANCE_CHECK]),
        ([1], "violation", [BALANCE_CHECK]),
        ([1], "held", []),
    ]
    assert all(q["topic"] == topic for q in quarantined)
    assert [q["offset"] for q in quarantined] == sorted(q["offset"] for q in quarantined)
    # only the quarantined keys differ from the source
    for d in compare_all(config, pipeline.url):
        if d.name == "accounts":
            assert d.missing == [(11,)] and {k for k, *_ in d.different} == {(1,)}, d.describe()
        else:
            assert d.diffs == 0, d.describe()

    # the stream goes on: a new change of a waiting key waits too, others apply
    pipeline.sql("UPDATE accounts SET balance = 8 WHERE id = 1")  # passes, but waits
    pipeline.sql("UPDATE accounts SET note = 'later' WHERE id = 3")
    stats = pipeline.replicate_until_caught_up()
    assert stats.held == 1 and stats.quarantined == 0
    assert _accounts_rows(config)[3]["note"] == "later"

    # replay before any fix: nothing applies, every change still waits, exit code 1
    unchanged = _cdc("quarantine", "replay", "--config", cfg_path)
    assert unchanged.returncode == 1, unchanged.stdout + unchanged.stderr
    assert "replayed 0, still quarantined 6" in unchanged.stdout, unchanged.stdout
    assert "still fails" in unchanged.stdout

    # fix only the email check: key 11 replays; key 1 still fails on its balance
    _, half_path = _relaxed_config(
        pipeline, _accounts("quarantine", email=RELAXED_EMAIL, mode="scd2")
    )
    half = _cdc("quarantine", "replay", "--config", str(half_path))
    assert half.returncode == 1, half.stdout + half.stderr
    assert "replayed 2, still quarantined 4" in half.stdout, half.stdout
    assert BALANCE_CHECK in half.stdout

    # both checks fixed (refunds are valid data): everything replays, in order
    relaxed, relaxed_path = _relaxed_config(
        pipeline, _accounts("quarantine", email=RELAXED_EMAIL, balance_min=-1000, mode="scd2")
    )
    fixed = _cdc("quarantine", "replay", "--config", str(relaxed_path))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "replayed 4, still quarantined 0" in fixed.stdout, fixed.stdout
    pipeline.assert_equal_to_source()
    warehouse = open_warehouse(relaxed)
    try:
        assert warehouse.list_quarantine() == []
        target = _target(relaxed)
        assert warehouse.history_report(target).ok
        # every state of key 1 is a version, in source order, valid from its commit time
        history = warehouse.fetch_history(target, ["1"])
    finally:
        warehouse.close()
    assert [(v["email"], v["balance"], v["note"]) for v in history] == [
        ("user1@example.com", 10, "seed"),
        ("user1@example.com", -5, "refund"),
        ("renamed1@example.com", -5, "refund"),
        ("renamed1@example.com", 7, "refund"),
        ("renamed1@example.com", 8, "refund"),
    ]
    committed = _audit_commit_times(pipeline, 1)
    assert [v["valid_from"] for v in history[1:]] == committed
    assert [v["valid_to"] for v in history] == [*committed, None]
    # a second replay finds nothing to do
    again = _cdc("quarantine", "replay", "--config", str(relaxed_path))
    assert again.returncode == 0 and "nothing quarantined" in again.stdout, again.stdout


def test_dlq_mode_dead_letters_failing_rows_with_the_check_in_a_header(
    pipeline: Pipeline,
) -> None:
    pipeline.sql(ACCOUNTS_DDL)
    config = pipeline.configure(_accounts("dlq"), linger_ms=50)
    topic = config.topic_for(config.table("accounts"))
    dlq = config.dlq_topic_for(config.table("accounts"))
    pipeline.start_debezium()
    pipeline.replicate_until_caught_up()
    pipeline.sql("INSERT INTO accounts VALUES (11, NULL, 5, 'no email')")
    pipeline.sql("UPDATE accounts SET balance = -1 WHERE id = 4")
    pipeline.sql("INSERT INTO accounts VALUES (12, 'user12@example.com', 12, 'valid')")
    stats = pipeline.replicate_until_caught_up()
    assert stats.dead_letters == 2 and stats.quarantined == 0

    letters = read_topic(config.kafka.bootstrap_servers, dlq)
    by_checks = {_headers(m)[H_CHECKS]: m for m in letters}
    # a NULL email fails not-null (and, being NULL, not the pattern)
    assert set(by_checks) == {json.dumps(["email: not null"]), json.dumps([BALANCE_CHECK])}
    originals = {m.offset(): m for m in read_topic(config.kafka.bootstrap_servers, topic)}
    for letter in letters:
        headers = _headers(letter)
        assert headers[H_ERROR_CLASS] == "ContractViolationError"
        original = originals[int(headers[H_OFFSET])]
        assert (letter.key(), letter.value()) == (original.key(), original.value())
    rows = _accounts_rows(config)
    assert 11 not in rows and rows[4]["balance"] == 40 and rows[12]["note"] == "valid"


def test_fail_mode_stops_cleanly_without_moving_offsets(pipeline: Pipeline) -> None:
    pipeline.sql(ACCOUNTS_DDL)
    config = pipeline.configure(_accounts("fail"), linger_ms=50)
    cfg_path = str(pipeline.workdir / "cdc.yaml")
    topic = config.topic_for(config.table("accounts"))
    pipeline.start_debezium()
    pipeline.replicate_until_caught_up()
    warehouse = open_warehouse(config)
    before = warehouse.load_offsets(config.kafka.group_id)
    warehouse.close()

    # one transaction: one batch with a valid change on each side of the failing one
    pipeline.sql(
        "BEGIN; UPDATE accounts SET note = 'first' WHERE id = 2; "
        "UPDATE accounts SET email = 'staff5@intranet' WHERE id = 5; "
        "UPDATE accounts SET note = 'last' WHERE id = 6; COMMIT"
    )
    pipeline.wait_published()
    [failing] = [
        m
        for m in read_topic(config.kafka.bootstrap_servers, topic)
        if m.value()
        and json.loads(m.key() or b"{}")["payload"] == {"id": 5}
        and (m.offset() or 0) >= before[(topic, 0)]
    ]
    where = f"{topic}[0]@{failing.offset()}"
    with pytest.raises(ReplicationStoppedError) as stopped:
        pipeline.replicate_until_caught_up()
    # `cdc run` after a restart meets the same row: exit code 3, the message printed verbatim
    # (the check's regex has brackets that terminal markup must not eat)
    run = _cdc("run", "--until-caught-up", "--config", cfg_path)
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    for message in (str(stopped.value), " ".join(run.stderr.split())):
        for part in ("'accounts'", "key [5]", where, EMAIL_CHECK, "no offset moved"):
            assert part in message, message
    warehouse = open_warehouse(config)
    try:
        assert warehouse.load_offsets(config.kafka.group_id) == before
        rows = {r["id"]: r for r in warehouse.fetch_table(_target(config))}
    finally:
        warehouse.close()
    assert (rows[2]["note"], rows[5]["email"], rows[6]["note"]) == (
        "seed",
        "user5@example.com",
        "seed",
    )

    relaxed, _ = _relaxed_config(pipeline, _accounts("fail", email=RELAXED_EMAIL))
    stats = ReplicatorThread(relaxed).start().finish()
    assert stats.events >= 3
    pipeline.assert_equal_to_source()
