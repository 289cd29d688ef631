"""Every PostgreSQL type the product claims, through the real chain, NULLs included."""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pytest

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id        integer PRIMARY KEY,
    c_small   smallint,
    c_int     integer,
    c_big     bigint,
    c_num     numeric(12, 2),
    c_num38   numeric(38, 10),
    c_varnum  numeric,
    c_real    real,
    c_double  double precision,
    c_bool    boolean,
    c_text    text,
    c_varchar varchar(20),
    c_char    char(3),
    c_bytea   bytea,
    c_date    date,
    c_time    time,
    c_timetz  timetz,
    c_ts      timestamp,
    c_tstz    timestamptz,
    c_iv      interval,
    c_uuid    uuid,
    c_json    json,
    c_jsonb   jsonb,
    c_ints    integer[],
    c_texts   text[],
    c_enum    mood,
    c_inet    inet
);
"""

ROWS = [
    # edge values
    """(1, -32768, -2147483648, -9223372036854775808, -9999999999.99,
        1234567890123456789012345678.0123456789, -0.0000000001, -3.4e38, 1.7976931348623157e308,
        true, 'O''Reilly; DROP TABLE x; -- $$ ünï©ødé 🚀', 'twenty chars exactly', 'ab',
        '\\x00ff10'::bytea, '0001-01-01', '00:00:00', '23:59:59.999999+14',
        '1900-01-01 00:00:00.000001', '1969-12-31 23:59:59.999999-08',
        '-1 years -2 mons +3 days -04:05:06.789', '00000000-0000-0000-0000-000000000000',
        '{"b":  1, "a": [1, 2.50]}', '{"z": {"y": [null, true, "ü"]}, "a": 1.0}',
        '{1,NULL,-3}', '{"","a b","quote''d",NULL}', 'sad', '::1')""",
    """(2, 32767, 2147483647, 9223372036854775807, 9999999999.99, -1, 12345678901234567.1234567891,
        1.5, -0.1, false, '', 'x', 'abc', ''::bytea, '9999-12-31', '23:59:59.999999', '00:00:00-12',
        '2262-04-11 23:47:16.854775', '2038-01-19 03:14:07.123456+05:30', '0 seconds',
        'ffffffff-ffff-ffff-ffff-ffffffffffff', '[]', '{}', '{}', '{}', 'happy',
        '192.168.100.0/24')""",
    """(3, 0, 0, 0, 0, 0, 0, 0, 0, true, 'plain', 'v', 'c', '\\x00'::bytea, '1970-01-01', '12:00',
        '12:00+02', '2024-02-29 12:00:00', '2024-02-29 12:00:00+00', '1 mon 1 day 00:00:00.000001',
        gen_random_uuid(), 'null', '"string"', '{0}', '{"x"}', 'ok', '10.0.0.1')""",
]


def test_every_type_round_trips_losslessly(pipeline: Pipeline) -> None:
    pipeline.sql(DDL)
    pipeline.sql(f"INSERT INTO all_types VALUES {ROWS[0]}")  # arrives as a snapshot read
    pipeline.sql("INSERT INTO all_types (id) VALUES (100)")  # NULL in every column
    config = pipeline.configure(["public.all_types"])
    pipeline.start_debezium()
    pipeline.wait_published()
    # streamed changes: inserts, an update of every column, NULLs written over values
    pipeline.sql(f"INSERT INTO all_types VALUES {ROWS[1]}, {ROWS[2]}")
    pipeline.sql("INSERT INTO all_types (id) VALUES (101)")
    pipeline.sql(
        "UPDATE all_types SET c_num = c_num + 0.01, c_iv = c_iv + interval '1 month', "
        "c_tstz = c_tstz + interval '1 microsecond', c_texts = c_texts || '{new}' WHERE id = 3"
    )
    pipeline.sql("UPDATE all_types SET c_jsonb = NULL, c_uuid = NULL, c_ints = NULL WHERE id = 2")
    pipeline.replicate_until_caught_up()
    pipeline.assert_equal_to_source()

    # exact warehouse types: NUMERIC stays DECIMAL (never DOUBLE), zones and JSON kept
    with duckdb.connect(str(config.warehouse.path), read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'all_types'"
            ).fetchall()
        )
    assert types["c_num"] == "DECIMAL(12,2)"
    assert types["c_num38"] == "DECIMAL(38,10)"
    assert types["c_varnum"].startswith("DECIMAL(38,")
    assert types["c_real"] == "FLOAT"
    assert types["c_double"] == "DOUBLE"
    assert types["c_tstz"] == "TIMESTAMP WITH TIME ZONE"
    assert types["c_ts"] == "TIMESTAMP"
    assert types["c_timetz"] == "TIME WITH TIME ZONE"
    assert types["c_iv"] == "INTERVAL"
    assert types["c_uuid"] == "UUID"
    assert types["c_json"] == "JSON"
    assert types["c_jsonb"] == "JSON"
    assert types["c_bytea"] == "BLOB"
    assert types["c_ints"] == "INTEGER[]"
    assert types["c_texts"] == "VARCHAR[]"
    assert types["_cdc_lsn"] == "BIGINT"
