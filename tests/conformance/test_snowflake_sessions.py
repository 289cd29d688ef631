"""Two Snowflake adapter instances at once (fakesnow's server, the real connector).

A consumer, a bulk snapshot, a reconciliation and every member of a consumer group each open
their own :class:`SnowflakeWarehouse`, often on the same tables. Staging is ``DELETE`` +
``PUT`` + ``COPY`` into a staging table and then statements that read it: if two instances
shared a staging table, one's ``DELETE`` or ``COPY`` between another's statements would make
that one apply the wrong rows (seen as "Conflict on tuple deletion" on fakesnow when a bulk
snapshot ran beside the consumer). Each instance stages into its own tables.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.snowflake.adapter import SnowflakeWarehouse
from warehouse.snowflake.settings import SnowflakeSettings
from warehouse.sql import TableRef

pytestmark = pytest.mark.conformance


def _staged(wh: SnowflakeWarehouse, ref: TableRef) -> list[int]:
    cur = wh._connection().cursor()
    cur.execute(f'SELECT "id" FROM "{ref.schema}"."{ref.name}" ORDER BY 1')
    return [r[0] for r in cur.fetchall()]


def _staging_tables(wh: SnowflakeWarehouse) -> set[str]:
    cur = wh._connection().cursor()
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
        [wh.bookkeeping_schema],
    )
    return {r[0] for r in cur.fetchall() if r[0].startswith("CDC_STG_")}


def test_each_instance_stages_into_its_own_tables_and_drops_them_at_close(
    snowflake_settings: SnowflakeSettings, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = SnowflakeWarehouse(snowflake_settings, tmpdir=tmp_path / "a")
    b = SnowflakeWarehouse(snowflake_settings, tmpdir=tmp_path / "b")
    try:
        a.ensure_bookkeeping()
        b.ensure_bookkeeping()
        ours = pa.table({"id": pa.array([1, 2, 3], pa.int64())})
        theirs = pa.table({"id": pa.array([7, 8], pa.int64())})
        # the same purpose and shape, interleaved: A staged, then B staged, then A reads
        a_ref = a._run(lambda cur: a._stage(cur, "keys", ours, "items"), "items")
        b_ref = b._run(lambda cur: b._stage(cur, "keys", theirs, "items"), "items")
        assert _staged(a, a_ref) == [1, 2, 3]
        assert _staged(b, b_ref) == [7, 8]
        assert a_ref.name != b_ref.name
        assert {a_ref.name, b_ref.name} <= _staging_tables(b)
        a.close()
        left = _staging_tables(b)
        assert a_ref.name not in left and b_ref.name in left
    finally:
        a.close()
        b.close()
