"""The type matrix on the real chain (issue 17): every built-in PostgreSQL 18 type Debezium's
PostgreSQL connector can emit, domains over them, arrays, composites, ranges and multiranges,
and the embedded build's extension types, with edge values, through PostgreSQL -> Debezium ->
Tansu -> consumer -> DuckDB and Snowflake (fakesnow's server, the real connector).

One table ``m_<name>`` (``id int primary key, v <type>, note text``) per type, so a refused type
blocks no other; one Debezium connector for all of them and one consumer run per warehouse.
Each value is written before Debezium starts (its snapshot reads it) and while it streams (an
insert, an update from NULL, and from a value to NULL); each type also has rows deleted from
the snapshot and from the stream, and TOASTable types a value > 2 KB that an update of the
``note`` column leaves untouched (Debezium sends a placeholder for it).

Each column must end equal to the source by PostgreSQL's own reading: the warehouse value is
read with the warehouse's driver, rendered as text and cast to the column type in PostgreSQL
(``tests/type_matrix_support.py``). ``CASES`` declares the expected outcome of every (type,
value): ``exact``, ``quarantined`` (the value can't be held by the warehouse type: it lands in
the quarantine table with a reason naming the column, and the same value in a copy of the table
with the override ``columns: {v: {type: text}}`` is exact), ``refused`` (the table is parked
before any row is read) or ``error``. Anything else fails, with a table of the unexpected
outcomes. The "Type mapping" table of docs/type-mapping.md is generated from what the test observed;
``CDC_UPDATE_TYPE_TABLE=1`` rewrites it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import snowflake.connector
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from stack_support import read_topic, snowflake_warehouse_section
from type_matrix_support import (
    DEAD,
    DELETE_VALUE,
    ERROR,
    EXACT,
    FATAL,
    MISSING_COLUMN,
    MISSING_ROW,
    MISSING_TABLE,
    QUARANTINED,
    REFUSED,
    TOAST_VALUE,
    V_,
    WRONG,
    Judge,
    Observation,
    T,
    V,
    create_statements,
    current_section,
    debezium_field_type,
    duckdb_render_expr,
    duckdb_text,
    expected_rows,
    failure_table,
    readme_table,
    replace_section,
    short,
    snapshot_statements,
    snowflake_text,
    stream_statements,
)

from cdc.config import Config
from cdc.local.pipeline import ReplicatorThread, write_stack_config
from cdc.runtime import open_warehouse

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

Q, R, E, F, W, D = QUARANTINED, REFUSED, ERROR, FATAL, WRONG, DEAD
SF_Q = {"snowflake": Q}  # Snowflake can't hold it (years outside 1..9999, infinities, 24:00)

# values > 2 KB that don't compress (so they are stored out of line, TOASTed)
HEX = "(SELECT string_agg(md5(g::text), '{sep}') FROM generate_series(1, {n}) g)"
BIG_TEXT = HEX.format(sep="", n=100)  # 3,200 characters
BIG_INTS = (
    "(SELECT array_agg(('x' || substr(md5(g::text), 1, 7))::bit(28)::int) "
    "FROM generate_series(1, 1000) g)"
)
BIG_FLOATS = (
    "(SELECT array_agg((('x' || substr(md5(g::text), 1, 6))::bit(24)::int / 7.0)::real) "
    "FROM generate_series(1, 1000) g)"
)

SETUP = """
CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;
CREATE EXTENSION cube; CREATE EXTENSION isn; CREATE EXTENSION seg; CREATE EXTENSION vector;
CREATE EXTENSION lo;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'über glücklich');
CREATE TYPE pair AS (a integer, b text);
CREATE TYPE nest AS (p pair, ts timestamptz[], n numeric);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE DOMAIN d_posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN d_posint2 AS d_posint;
CREATE DOMAIN d_amount AS numeric(12, 2);
CREATE DOMAIN d_text AS text CHECK (VALUE <> 'forbidden');
CREATE DOMAIN d_tstz AS timestamptz;
CREATE DOMAIN d_date AS date;
CREATE DOMAIN d_ints AS integer[];
"""

UNI = "'O''Reilly; ünï©ødé 🚀 \\ \" tab\there'"

# ---- the expected outcome of every (type, value) ------------------------------------------
# V(sql, duckdb=..., snowflake=..., override=...), V_(sql, both, **one); NULL is added to every
# type (expected exact). refused=<what to do> marks the whole table refused.
CASES: list[T] = [
    # integers
    T("int2", "smallint", (V("-32768"), V("32767"), V("0"))),
    T("int4", "integer", (V("-2147483648"), V("2147483647"))),
    T("int8", "bigint", (V("-9223372036854775808"), V("9223372036854775807"))),
    T("oid", "oid", (V("0"), V("4294967295"))),
    # numerics
    T(
        "numeric_10_2",
        "numeric(10,2)",
        (
            V("-99999999.99"),
            V("99999999.99"),
            V("0.01"),
            V_("'NaN'", Q),
        ),
    ),
    T(
        "numeric_38_0",
        "numeric(38,0)",
        # fakesnow stores NUMBER(38,0) as a 64-bit BIGINT (a real Snowflake account holds 38
        # digits): beyond it, the batch's COPY fails and the event is dead-lettered there
        (
            V("-99999999999999999999999999999999999999", snowflake=D),
            V("99999999999999999999999999999999999999", snowflake=D),
            V("-9223372036854775808"),
        ),
        note="on fakesnow (NUMBER(38,0) is a BIGINT there) values beyond 64 bits are "
        "dead-lettered; a Snowflake account holds them",
    ),
    T(
        "numeric_38_38",
        "numeric(38,38)",
        (
            V("0.99999999999999999999999999999999999999"),
            V("-0.00000000000000000000000000000000000001"),
        ),
    ),
    T("numeric_5_m2", "numeric(5,-2)", (V("9999900"), V("-100"))),
    T(
        "numeric_50_10",
        "numeric(50,10)",
        (V("1234567890123456789012345678901234567890.0123456789"),),
        refused="precision above 38: declare `columns: {<col>: {type: text}}` "
        "or a smaller precision",
    ),
    T(
        "numeric",
        "numeric",
        (
            V("1.50"),
            V("-0.0000000001"),
            V("1234567890123456789012345678.0123456789"),
            V("0"),
            V_("12345678901234567890123456789.0123456789", Q),
            V_("0.00000000001", Q),
            V_("'NaN'", Q),
            V_("'Infinity'", Q),
            V_("'-Infinity'", Q),
        ),
    ),
    T("money", "money", (V("-92233720368547758.08"), V("92233720368547758.07"), V("0"), V("0.01"))),
    # floats
    T(
        "float4",
        "real",
        (
            V("-3.4e38"),
            V("1.4e-45"),
            V("'NaN'"),
            V("'Infinity'"),
            V("'-Infinity'"),
            V("-0"),
            V("0.1"),
        ),
    ),
    T(
        "float8",
        "double precision",
        (
            V("1.7976931348623157e308"),
            V("5e-324"),
            V("'NaN'"),
            V("'Infinity'"),
            V("'-Infinity'"),
            V("0.1"),
        ),
    ),
    T("bool", "boolean", (V("true"), V("false"))),
    # text
    T("text", "text", (V("''"), V(UNI), V("E'line\\nbreak\\r'")), toast=BIG_TEXT),
    T("varchar_10", "varchar(10)", (V("''"), V("'ten chars!'"), V("'ünï©ødé🚀'")), toast=None),
    T("varchar", "varchar", (V("''"), V(UNI)), toast=BIG_TEXT),
    T("bpchar_5", "char(5)", (V("''"), V("'ab'"), V("'abcde'"), V("'ü'"))),
    T("char1", '"char"', (V("'a'"), V("''")), display='"char"'),
    T("name", "name", (V("''"), V("'" + "n" * 63 + "'"))),
    T(
        "bytea",
        "bytea",
        (V("'\\x'"), V("'\\x00ff10'"), V("'\\x5c'")),
        toast=f"decode({HEX.format(sep='', n=200)}, 'hex')",
    ),
    # bit strings
    T("bit1", "bit(1)", (V("B'0'"), V("B'1'")), note="as a text bit string"),
    T("bit4", "bit(4)", (V("B'0101'"), V("B'0000'")), note="as a text bit string"),
    T("bit64", "bit(64)", (V("B'1" + "0" * 62 + "1'"),), note="as a text bit string"),
    T(
        "varbit",
        "bit varying(10)",
        (V("B'101'"), V("B'0101'"), V("B''")),
        refused="Debezium loses the bit length (B'101' and B'0101' arrive the same): declare "
        "`bit(n)` or `text`",
    ),
    # date and time
    T(
        "date",
        "date",
        (
            V("'2024-02-29'"),
            V("'1970-01-01'"),
            V("'0001-01-01'"),
            V("'9999-12-31'"),
            # Debezium's snapshot reads a BC date as the same date AD (streamed ones are exact)
            V_("'4713-01-01 BC'", **SF_Q, snapshot=W),
            V_("'5874897-12-31'", **SF_Q),
            V_("'infinity'", **SF_Q),
            V_("'-infinity'", **SF_Q),
        ),
    ),
    T(
        "time",
        "time",
        (V("'00:00:00'"), V("'23:59:59.999999'"), V("'12:34:56.5'"), V_("'24:00:00'", **SF_Q)),
    ),
    T("time_0", "time(0)", (V("'12:34:56'"), V_("'24:00:00'", **SF_Q))),
    T("time_3", "time(3)", (V("'12:34:56.789'"),)),
    T(
        "timetz",
        "timetz",
        (
            V("'00:00:00+00'"),
            V("'12:00:00+02'"),
            V("'23:59:59.999999+14'"),
            V("'00:00:00-12'"),
            V("'24:00:00-15:59'"),
        ),
    ),
    T(
        "timestamp",
        "timestamp",
        (
            V("'2024-02-29 12:34:56.789012'"),
            V("'1970-01-01 00:00:00'"),
            V("'0001-01-01 00:00:00'"),
            V("'9999-12-31 23:59:59.999999'"),
            V_("'10000-01-01 00:00:00'", **SF_Q),
            V_("'4713-01-01 00:00:00 BC'", **SF_Q),
            V_("'infinity'", **SF_Q),
            V_("'-infinity'", **SF_Q),
            # Debezium overflows it to a number outside PostgreSQL's range: dead-lettered
            V_("'294276-12-31 23:59:59.999999'", D, override=D),
        ),
    ),
    T(
        "timestamp_0",
        "timestamp(0)",
        (V("'2024-02-29 12:34:56'"), V_("'4713-01-01 00:00:00 BC'", **SF_Q)),
    ),
    T("timestamp_3", "timestamp(3)", (V("'2024-02-29 12:34:56.789'"), V_("'infinity'", **SF_Q))),
    T(
        "timestamptz",
        "timestamptz",
        (
            V("'2024-02-29 12:34:56.789012+05:30'"),
            V("'1969-12-31 23:59:59.999999-08'"),
            V("'0001-01-01 00:00:00+00'"),
            V_("'4713-01-01 00:00:00+00 BC'", **SF_Q),
            V_("'infinity'", **SF_Q),
            V_("'-infinity'", **SF_Q),
            V_("'294276-12-31 23:59:59.999999+00'", Q),
        ),
    ),
    T(
        "interval",
        "interval",
        (
            V("'1 year 2 mons 3 days 04:05:06.789'"),
            V("'-1 years -2 mons +3 days -04:05:06.789'"),
            V("'0'"),
            V("'178000000 years'"),
            V("'-178000000 years'"),
            # the JDBC driver's PGInterval reads hours as an int: the snapshot fails, retried
            V_("'2147483647 days 2562047788:00:54.775807'", F),
            V("'1 mon -30 days'"),
            # Debezium 3.6 sends PostgreSQL 17's infinite intervals as 0 (PT0S)
            V_("'infinity'", W),
            V_("'-infinity'", W),
        ),
    ),
    # identifiers, network
    T(
        "uuid",
        "uuid",
        (
            V("'00000000-0000-0000-0000-000000000000'"),
            V("'ffffffff-ffff-ffff-ffff-ffffffffffff'"),
            V("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
        ),
    ),
    T("inet", "inet", (V("'::1'"), V("'192.168.100.1/24'"), V("'2001:db8::1/64'"))),
    T("cidr", "cidr", (V("'10.0.0.0/8'"), V("'2001:db8::/32'"))),
    T("macaddr", "macaddr", (V("'08:00:2b:01:02:03'"),)),
    T("macaddr8", "macaddr8", (V("'08:00:2b:01:02:03:04:05'"),)),
    # JSON
    T(
        "json",
        "json",
        (
            V('\'{"b":  1, "a": [1, 2.50], "a": "dup"}\''),
            V("'\"ü\"'"),
            V("'null'"),
            V("'[]'"),
            V_("'1e400'", **SF_Q),
        ),
        toast=f"json_build_object('k', {BIG_TEXT})",
    ),
    T(
        "jsonb",
        "jsonb",
        (
            V('\'{"z": {"y": [null, true, "ü"]}, "a": 1.0}\''),
            V("'{}'"),
            V("'\"\"'"),
            # 39 digits: Snowflake's VARIANT keeps 38 (a larger number becomes a double)
            V_("'123456789012345678901234567890.123456789'", **SF_Q),
            V("'null'"),
        ),
        toast=f"jsonb_build_object('k', {BIG_TEXT})",
    ),
    T("jsonpath", "jsonpath", (V("'$.a[*] ? (@ > 1)'"),)),
    # text search
    T(
        "tsvector",
        "tsvector",
        (V("'a fat cat sat on a mat'"), V("''"), V("'ü:1A,2B'")),
        toast=f"to_tsvector('simple', {HEX.format(sep=' ', n=100)})",
    ),
    T("tsquery", "tsquery", (V("'fat & (rat | cat)'"), V("'!a <-> b:*'"))),
    # geometry
    T("point", "point", (V("'(1.5,-2.5)'"), V("'(0,0)'"), V("'(1e308,-1e-308)'"))),
    T("line", "line", (V("'{1,-1,0}'"),)),
    T("lseg", "lseg", (V("'[(0,0),(1,1)]'"),)),
    T("box", "box", (V("'(1,1),(0,0)'"),)),
    T("path", "path", (V("'[(0,0),(1,1),(2,0)]'"), V("'((0,0),(1,1))'"))),
    T("polygon", "polygon", (V("'((0,0),(1,1),(1,0))'"),)),
    T("circle", "circle", (V("'<(0,0),1.5>'"),)),
    # system types
    T("pg_lsn", "pg_lsn", (V("'0/0'"), V("'FFFFFFFF/FFFFFFFF'"))),
    T("xid", "xid", (V("'4294967295'"),)),
    T("xid8", "xid8", (V("'18446744073709551615'"),)),
    T("cid", "cid", (V("'7'"),)),
    T("tid", "tid", (V("'(4294967295,65535)'"),)),
    T("txid_snapshot", "txid_snapshot", (V("'10:20:10,14,15'"),)),
    T("pg_snapshot", "pg_snapshot", (V("'10:20:10,14,15'"),)),
    T("regclass", "regclass", (V("'pg_class'"),)),
    T("regtype", "regtype", (V("'integer'"),)),
    T("regproc", "regproc", (V("'now'"),)),
    T("regnamespace", "regnamespace", (V("'public'"),)),
    T("regrole", "regrole", (V("'postgres'"),)),
    T("regconfig", "regconfig", (V("'english'"),)),
    T(
        "int2vector",
        "int2vector",
        (V("'1 2 3'"),),
        refused="Debezium loses the values: cast to `int2[]` or `text` in a view/generated column",
    ),
    T(
        "oidvector",
        "oidvector",
        (V("'1 2 3'"),),
        refused="Debezium loses the values: cast to `oid[]` or `text` in a generated column",
    ),
    # enum, composite, domains
    T("enum", "mood", (V("'sad'"), V("'über glücklich'")), display="enum"),
    T(
        "composite",
        "pair",
        (V("ROW(1, 'x y')"), V("ROW(NULL, NULL)"), V("ROW(-1, '\"q\",')")),
        display="composite type",
    ),
    T(
        "composite_nested",
        "nest",
        (V("ROW(ROW(1, 'a'), ARRAY['2024-01-01 00:00+00'::timestamptz], 'NaN')"),),
        display="composite of composite, array, numeric",
    ),
    T("domain_posint", "d_posint", (V("1"), V("2147483647")), display="domain over integer"),
    T("domain_posint2", "d_posint2", (V("1"),), display="domain over domain"),
    T(
        "domain_amount",
        "d_amount",
        (V("-9999999999.99"), V("'NaN'")),
        display="domain over numeric(12,2)",
        note="as its text (string mode hides the numeric behind the domain's name)",
    ),
    T("domain_text", "d_text", (V("''"), V(UNI)), display="domain over text"),
    T(
        "domain_tstz",
        "d_tstz",
        (V("'2024-02-29 12:34:56.789012+05:30'"), V_("'infinity'", **SF_Q)),
        display="domain over timestamptz",
    ),
    T(
        "domain_date",
        "d_date",
        (V("'2024-02-29'"), V_("'4713-01-01 BC'", **SF_Q, snapshot=W)),
        display="domain over date",
    ),
    T("domain_ints", "d_ints", (V("'{1,NULL,-3}'"), V("'{}'")), display="domain over integer[]"),
    # ranges and multiranges
    T("int4range", "int4range", (V("'[1,10)'"), V("'empty'"), V("'(,)'"), V("'[,5]'"))),
    T("int8range", "int8range", (V("'[-9223372036854775808,9223372036854775807)'"),)),
    T("numrange", "numrange", (V("'(1.5,2.50]'"), V("'[0,1]'"))),
    T("daterange", "daterange", (V("'[2024-01-01,2024-02-01)'"), V("'[-infinity,infinity]'"))),
    T("tsrange", "tsrange", (V("'[2024-01-01 00:00,infinity)'"),)),
    T("tstzrange", "tstzrange", (V("'[2024-01-01 00:00+00,2024-01-02 00:00+05:30)'"),)),
    T("floatrange", "floatrange", (V("'[-Infinity,1.5)'"),), display="custom range (float8)"),
    T("int4multirange", "int4multirange", (V("'{[1,3),[5,7)}'"), V("'{}'"))),
    T("int8multirange", "int8multirange", (V("'{[1,3)}'"),)),
    T("nummultirange", "nummultirange", (V("'{[1.5,2.5)}'"),)),
    T("datemultirange", "datemultirange", (V("'{[2024-01-01,2024-02-01)}'"),)),
    T("tsmultirange", "tsmultirange", (V("'{[2024-01-01,2024-02-01)}'"),)),
    T("tstzmultirange", "tstzmultirange", (V("'{[2024-01-01 00:00+00,)}'"),)),
    # arrays
    T("int2_arr", "smallint[]", (V("'{-32768,32767,NULL}'"), V("'{}'"))),
    T(
        "int4_arr",
        "integer[]",
        # Debezium sends the elements of a 2-D array as NULLs: a documented limitation
        (
            V("'{1,NULL,-3}'"),
            V("'{}'"),
            V_("'{{1,2},{3,4}}'", W),
            V_("'[0:1]={7,8}'", W),
        ),  # lower bound lost
        toast=BIG_INTS,
    ),
    T("int8_arr", "bigint[]", (V("'{-9223372036854775808,9223372036854775807,NULL}'"),)),
    T(
        "text_arr",
        "text[]",
        (
            V('\'{"","a b","quote\\"d","back\\\\slash",NULL,"NULL"}\''),
            V("'{}'"),
            V("ARRAY['ü🚀', '{x}', ',']"),
        ),
        toast=f"ARRAY[{BIG_TEXT}, 'x']",
    ),
    T("varchar_arr", "varchar(5)[]", (V("'{a,abcde,NULL}'"),)),
    T("bpchar_arr", "char(3)[]", (V("'{a,abc,NULL}'"),)),
    T("bool_arr", "boolean[]", (V("'{true,false,NULL}'"),)),
    T(
        "float4_arr",
        "real[]",
        (V_("'{NaN,Infinity,-Infinity,1.5}'", **SF_Q), V("'{}'")),
        toast=BIG_FLOATS,
        replica_full=True,
    ),
    T(
        "float8_arr",
        "double precision[]",
        (V_("'{NaN,-Infinity,1e308,5e-324}'", **SF_Q),),
        replica_full=True,
    ),
    T(
        "float4_arr_default_identity",
        "real[]",
        (V("'{1.5}'"),),
        refused="an unchanged TOASTed value arrives as NULL: REPLICA IDENTITY FULL",
        display="real[] (default REPLICA IDENTITY)",
    ),
    T(
        "numeric_arr",
        "numeric[]",
        (V("'{1.50,NULL,-2}'"), V("'{NaN,1}'")),
        refused="Debezium sends an array holding NaN as NULL: store it as `text[]` at the source",
    ),
    T(
        "numeric_10_2_arr",
        "numeric(10,2)[]",
        (V("'{1.50,-99999999.99}'"),),
        refused="Debezium sends an array holding NaN as NULL: store it as `text[]` at the source",
    ),
    T(
        "money_arr",
        "money[]",
        (V("'{1.50,-92233720368547758.08}'"),),
        refused="Debezium sends an array holding NaN as NULL: store it as `text[]` at the source",
    ),
    T("bytea_arr", "bytea[]", (V("'{\"\\\\x00ff\",NULL}'"),)),
    T("date_arr", "date[]", (V("'{2024-02-29,NULL}'"), V_("'{infinity}'", **SF_Q))),
    T(
        "time_arr",
        "time[]",
        (V("'{00:00,23:59:59.999999}'"), V("'{24:00:00}'")),
        refused="Debezium sends 24:00:00 inside a time[] as 00:00:00",
    ),
    T("timetz_arr", "timetz[]", (V("'{00:00+00,12:00+02,NULL}'"),)),
    T("timestamp_arr", "timestamp[]", (V("'{\"2024-02-29 12:34:56.789012\",NULL}'"),)),
    T("timestamptz_arr", "timestamptz[]", (V("'{\"2024-02-29 12:34:56.789012+00\",NULL}'"),)),
    T(
        "interval_arr",
        "interval[]",
        (V("'{1 day,-1 mon}'"),),
        refused="Debezium drops interval[] columns: declare `text[]` or `text`",
    ),
    T("uuid_arr", "uuid[]", (V("'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"),)),
    T("json_arr", "json[]", (V("ARRAY['{\"a\": 1}'::json, 'null'::json, NULL]"),)),
    T("jsonb_arr", "jsonb[]", (V("ARRAY['{\"a\": 1}'::jsonb, '[]'::jsonb, NULL]"),)),
    T("inet_arr", "inet[]", (V("'{::1,10.0.0.1/8,NULL}'"),)),
    T("cidr_arr", "cidr[]", (V("'{10.0.0.0/8,NULL}'"),)),
    T("macaddr_arr", "macaddr[]", (V("'{08:00:2b:01:02:03,NULL}'"),)),
    T(
        "enum_arr",
        "mood[]",
        (V("'{sad,happy}'"), V("'{sad,NULL}'")),
        display="enum[]",
        refused="Debezium sends an enum[] holding a NULL element as NULL",
    ),
    T(
        "point_arr",
        "point[]",
        (V("ARRAY['(1,2)'::point]"),),
        refused="Debezium leaves point[] columns out",
    ),
    T("int4range_arr", "int4range[]", (V("ARRAY['[1,2)'::int4range, 'empty', NULL]"),)),
    T(
        "composite_arr",
        "pair[]",
        (V("ARRAY[ROW(1, 'a')::pair, NULL]"),),
        display="composite[]",
        refused="Debezium sends an array of composites holding a NULL element as NULL",
    ),
    # extensions
    T(
        "hstore",
        "hstore",
        (V('\'a=>1, "b c"=>NULL, "ü"=>"\\"q\\""\''), V("''")),
        toast=f"hstore('k', {BIG_TEXT})",
    ),
    T("citext", "citext", (V("'MiXeD Ünï'"), V("''")), toast=BIG_TEXT),
    T("citext_arr", "citext[]", (V("'{A,b,NULL}'"),)),
    T("hstore_arr", "hstore[]", (V("ARRAY['a=>1'::hstore, NULL]"),)),
    T(
        "ltree",
        "ltree",
        (V("'Top.Science.Astronomy'"), V("''")),
        toast=f"text2ltree({HEX.format(sep='.', n=100)})",
    ),
    T(
        "ltree_arr",
        "ltree[]",
        (V("'{a.b,c}'"), V("'{a.b,c,NULL}'")),
        refused="Debezium sends an ltree[] holding a NULL element as NULL",
    ),
    T("lquery", "lquery", (V("'*.Astronomy.*'"),)),
    T("ltxtquery", "ltxtquery", (V("'Europe & Russia*@'"),)),
    T("cube", "cube", (V("'(1,2),(3,4)'"), V("'(1e300)'"))),
    T("seg", "seg", (V("'5.0 .. 7.0'"), V("'<1.2'"))),
    T("isbn", "isbn", (V("'978-0-393-04002-9'"),)),
    T("isbn13", "isbn13", (V("'978-0-393-04002-9'"),)),
    T("issn", "issn", (V("'1436-4522'"),)),
    T("ean13", "ean13", (V("'022-035648348-1'"),)),
    T("upc", "upc", (V("'220356483481'"),)),
    T("ismn", "ismn", (V("'979-0-2600-0043-8'"),)),
    T(
        "vector",
        "vector",
        (V("'[1,2.5,-3e-7]'"),),
        toast=f"{BIG_FLOATS}::vector",
        replica_full=True,
    ),
    T("halfvec", "halfvec", (V("'[1,2.5,65504]'"),), replica_full=True),
    T("sparsevec", "sparsevec", (V("'{1:1.5,3:-2}/5'"),), replica_full=True),
    T("lo", "lo", (V("4294967295"),), display="lo (domain over oid)"),
]


# What the README says of the outcomes that are Debezium's (wrong values and dead letters are
# Debezium 3.6's own losses, documented under Limitations; the matrix shows they still happen)
NOTES = {
    "date": "Debezium's snapshot reads a BC date as the same date AD (streamed changes are "
    "exact; `cdc reconcile --repair` or `cdc snapshot --method bulk` fixes them)",
    "domain_date": "as `date`",
    "timetz": "Debezium sends it in UTC: the time of day is kept, the original offset is not",
    "timestamp": "Debezium overflows years after 294247 into a number outside PostgreSQL's "
    "range: dead-lettered with the reason",
    "interval": "Debezium sends PostgreSQL 17's infinite intervals as 0; an interval of more "
    "than 2^31 hours stops its snapshot",
    "int4_arr": "Debezium sends a 2-D array's elements as NULLs and drops a lower bound other "
    "than 1 (a column declared `int[][]` is refused)",
}
CASES = [dataclasses.replace(t, note=NOTES.get(t.name, t.note)) for t in CASES]


# ---- the run ---------------------------------------------------------------------------------


def _tables_config(types: Sequence[T]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in types:
        out.append({"name": f"public.{t.table}"})
        if t.needs_override():
            out.append({"name": f"public.{t.override_table}", "columns": {"v": {"type": "text"}}})
    return out


def _write_source(pipeline: Pipeline, types: Sequence[T], phase: str) -> list[str]:
    """Each table's statements, one transaction per table; returns the failures (a value
    PostgreSQL itself rejects is a bug of the matrix)."""
    failures = []
    for t in types:
        tables = [t.table] + ([t.override_table] if t.needs_override() else [])
        for table in tables:
            make = snapshot_statements if phase == "snapshot" else stream_statements
            try:
                for statement in make(t, table):
                    pipeline.sql(statement)
            except Exception as exc:
                failures.append(f"{table} ({phase}): {exc}")
    return failures


def _first_messages(bootstrap: str, topics: Sequence[str]) -> dict[str, list[Any]]:
    """A few change events of each topic, read with one consumer (one per topic is slow:
    each waits for its end)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "type-matrix-schemas"})
    out: dict[str, list[Any]] = {}
    try:
        consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics])
        empty = 0
        while empty < 3 and len(out) < len(topics):
            msgs = consumer.consume(1000, timeout=1)
            empty = 0 if msgs else empty + 1
            for m in msgs:
                if m.error() is None and m.value() and len(out.get(m.topic() or "", [])) < 3:
                    out.setdefault(m.topic() or "", []).append(m)
    finally:
        consumer.close()
    return out


def _existing_topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def _dead_letters(bootstrap: str, config: Config) -> dict[tuple[str, int], tuple[str, str]]:
    """(table topic, row id) -> (dead-letter position, error), from the dead-letter topics."""
    existing = _existing_topics(bootstrap)
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for table in config.tables:
        topic = config.dlq_topic_for(table)
        if topic not in existing:
            continue
        for m in read_topic(bootstrap, topic):
            raw_headers: Any = m.headers() or []
            headers = {
                str(k): v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")
                for k, v in raw_headers
            }
            try:
                payload = json.loads(m.key() or b"null")
                row_id = int((payload.get("payload") or payload)["id"])
            except (ValueError, KeyError, TypeError, AttributeError):
                row_id = -1
            error = f"{headers.get('cdc.error.class', '?')}: {headers.get('cdc.error.message', '')}"
            position = f"{topic}/{m.partition()}/{m.offset()}"
            out[(config.topic_for(table), row_id)] = (position, error)
    return out


class Reader:
    """Reads one warehouse back: column types and ``v`` of each row as PostgreSQL text."""

    def __init__(self, config: Config, server: Mapping[str, Any] | None) -> None:
        self.config = config
        self.server = server


class DuckDBReader(Reader):
    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import duckdb

        settings = self.config.warehouse
        assert settings.type == "duckdb"
        path = str(settings.path)
        with duckdb.connect(path, read_only=True) as con:
            return con.execute(statement, list(params)).fetchall()

    def columns(self, table: str) -> dict[str, str]:
        rows = self._query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        return {r[0]: r[1] for r in rows}

    def values(self, table: str, dtype: str, pg_kind: str = "") -> dict[int, str | None]:
        expr = duckdb_render_expr('"v"', dtype)
        rows = self._query(f'SELECT "id", {expr} FROM main."{table}"')
        return {int(r[0]): duckdb_text(r[1]) for r in rows}


class SnowflakeReader(Reader):
    def _connect(self) -> Any:
        assert self.server is not None
        settings = self.config.warehouse
        assert settings.type == "snowflake"
        return snowflake.connector.connect(
            **self.server, database=settings.database, schema=settings.schema_name
        )

    def columns(self, table: str) -> dict[str, str]:
        with self._connect() as conn:
            rows = (
                conn.cursor()
                .execute(
                    "SELECT column_name, data_type, numeric_precision, numeric_scale "
                    "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                    "ORDER BY ordinal_position",
                    (self.config.warehouse.schema_name, table),
                )
                .fetchall()
            )
        out = {}
        for name, dtype, precision, scale in rows:
            if dtype in ("NUMBER", "DECIMAL") and precision is not None:
                dtype = f"NUMBER({precision},{scale})"
            out[name] = str(dtype)
        return out

    def values(self, table: str, dtype: str, pg_kind: str = "") -> dict[int, str | None]:
        # "v" IS NULL: fakesnow fetches a NULL timestamp as 1970-01-01 (local-stack.md)
        with self._connect() as conn:
            cur = conn.cursor()
            try:
                rows = cur.execute(f'SELECT "id", "v", "v" IS NULL FROM "{table}"').fetchall()
                return {
                    int(r[0]): None if r[2] else snowflake_text(r[1], dtype, pg_kind) for r in rows
                }
            except Exception:  # e.g. a value the connector can't convert: read it as text
                rows = cur.execute(f'SELECT "id", CAST("v" AS VARCHAR) FROM "{table}"').fetchall()
                return {int(r[0]): r[1] for r in rows}


def _snowflake_config(pipeline: Pipeline, server: Mapping[str, Any], tables: Any) -> Config:
    section = snowflake_warehouse_section(server, f"CDC_{pipeline.name.upper()}")
    return write_stack_config(
        pipeline.workdir / "snowflake.yaml",
        pipeline.stack,
        tables,
        group_id=f"{pipeline.name}-snowflake",  # its own group: reads the topics from the start
        topic_prefix=pipeline.name,
        slot_name=f"{pipeline.name}_slot",
        database=pipeline.database,
        warehouse=section,
        batch_size=20000,
    )


def _observe(
    warehouse: str,
    pipeline: Pipeline,
    config: Config,
    reader: DuckDBReader | SnowflakeReader,
    parked: Mapping[str, str],
    dead: Mapping[tuple[str, int], tuple[str, str]],
    run_error: str | None,
    column_types: dict[tuple[str, str], str | None],
) -> list[Observation]:
    """The outcome of every (type, value, phase) in one warehouse."""
    out: list[Observation] = []
    wh = open_warehouse(config)
    try:
        quarantine = wh.list_quarantine()
    finally:
        wh.close()
    held: dict[tuple[str, int], str] = {}
    for q in quarantine:
        try:
            row_id = int(json.loads(q.row.key)[0])
        except (ValueError, IndexError, TypeError):
            continue
        why = f"{q.row.reason} {','.join(q.row.checks)}".strip()
        held.setdefault((q.row.table, row_id), why)
    with Judge(pipeline.url) as judge:
        for t in CASES:
            tables = [(t.table, False)] + ([(t.override_table, True)] if t.needs_override() else [])
            for table, overridden in tables:
                topic = f"{config.source.topic_prefix}.public.{table}"
                try:
                    cols = reader.columns(table)
                except Exception as exc:
                    cols = {}
                    run_error = run_error or f"{type(exc).__name__}: {exc}"
                if not overridden:
                    column_types[(warehouse, t.name)] = cols.get("v")
                values: dict[int, str | None] = {}
                read_error = ""
                if "v" in cols:
                    try:
                        values = reader.values(table, cols["v"], judge.kind(t.type))
                    except Exception as exc:
                        read_error = f"reading back failed: {type(exc).__name__}: {exc}"
                for row_id, value_sql, phase in expected_rows(t):
                    if overridden:
                        v = next((x for x in t.all_values() if x.sql == value_sql), None)
                        expected = v.override if v is not None else EXACT
                        if v is not None and phase == "snapshot" and v.snapshot is not None:
                            expected = v.snapshot
                    elif value_sql in (DELETE_VALUE, TOAST_VALUE):
                        expected = REFUSED if t.refused else EXACT
                    else:
                        v = next(x for x in t.all_values() if x.sql == value_sql)
                        expected = t.expected(v, warehouse, phase)
                    outcome, detail = _judge_row(
                        judge, t, table, row_id, value_sql, topic, parked, held, dead, cols,
                        values, read_error, run_error,
                    )  # fmt: skip
                    out.append(
                        Observation(
                            warehouse, t.name, value_sql, phase, table, outcome, detail, expected
                        )
                    )
    return out


def _judge_row(
    judge: Judge,
    t: T,
    table: str,
    row_id: int,
    value_sql: str,
    topic: str,
    parked: Mapping[str, str],
    held: Mapping[tuple[str, int], str],
    dead: Mapping[tuple[str, int], tuple[str, str]],
    cols: Mapping[str, str],
    values: Mapping[int, str | None],
    read_error: str,
    run_error: str | None,
) -> tuple[str, str]:
    if topic in parked:
        return REFUSED, parked[topic]
    if (table, row_id) in held:
        return QUARANTINED, held[(table, row_id)]
    if (topic, row_id) in dead:
        return DEAD, dead[(topic, row_id)][1]
    if not cols:
        return MISSING_TABLE, run_error or "no warehouse table"
    if "v" not in cols:
        return MISSING_COLUMN, f"columns: {', '.join(cols)}"
    if read_error:
        return ERROR, read_error
    exists, source = judge.source_text(table, row_id)
    if value_sql == DELETE_VALUE:
        if row_id in values:
            return WRONG, f"deleted row present: {short(values[row_id])}"
        return EXACT, ""
    if row_id not in values:
        return (ERROR if value_sql.startswith("'294276") else MISSING_ROW), (
            f"source: {short(source)}" + (f"; run: {run_error}" if run_error else "")
        )
    if not exists:
        return WRONG, "row absent at the source"
    ok, read = judge.equal(table, t.type, row_id, values[row_id])
    if ok:
        return EXACT, ""
    shown = f"warehouse {short(values[row_id])} (PostgreSQL reads {short(read)})"
    return WRONG, f"{shown} vs source {short(source)}"


def readers_names() -> tuple[str, ...]:
    return ("duckdb", "snowflake")


def _wait_published(pipeline: Pipeline) -> None:
    """Wait for Debezium; if it never gets there, fail with the causes in its log."""
    try:
        pipeline.wait_published(timeout=150)
    except TimeoutError as exc:
        log = pipeline.stack.debezium_log.read_text(errors="replace").splitlines()
        causes = sorted({line[:300] for line in log if line.startswith("Caused by")})
        raise AssertionError(f"{exc}\nDebezium's log:\n" + "\n".join(causes[-20:])) from exc


def _run_consumer(config: Config) -> tuple[Any, str | None, float]:
    started = time.monotonic()
    try:
        stats = ReplicatorThread(config).start().finish(timeout=420)
        return stats, None, time.monotonic() - started
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        return None, error, time.monotonic() - started


def test_type_matrix(pipeline: Pipeline, fakesnow_server: dict[str, Any]) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    pipeline.sql(SETUP)
    for statement in create_statements(CASES):
        pipeline.sql(statement)
    problems = _write_source(pipeline, CASES, "snapshot")
    tables = _tables_config(CASES)
    duck_config = pipeline.configure(tables, batch_size=20000)
    sf_config = _snowflake_config(pipeline, fakesnow_server, tables)
    timings["source set-up"] = time.monotonic() - t0
    assert not problems, "the matrix's own SQL failed at the source:\n" + "\n".join(problems)

    t0 = time.monotonic()
    pipeline.start_debezium()
    _wait_published(pipeline)
    problems += _write_source(pipeline, CASES, "stream")
    _wait_published(pipeline)
    timings["Debezium snapshot + streaming"] = time.monotonic() - t0
    assert not problems, "the matrix's own SQL failed at the source:\n" + "\n".join(problems)

    bootstrap = pipeline.stack.bootstrap_servers
    topics = {duck_config.topic_for(duck_config.table(t.table)): t.name for t in CASES}
    first = _first_messages(bootstrap, list(topics))
    connect = {name: debezium_field_type(first.get(topic, [])) for topic, name in topics.items()}

    observations = [
        Observation(w, t.name, v.sql, "not written", t.table, FATAL, "Debezium fails on it", FATAL)
        for t in CASES
        for v in t.fatal_values()
        for w in readers_names()
    ]
    column_types: dict[tuple[str, str], str | None] = {}
    errors: dict[str, str] = {}
    seen_dead: set[str] = set()  # dead-letter positions (both consumers letter the same rows)
    readers: dict[str, tuple[Config, DuckDBReader | SnowflakeReader]] = {
        "duckdb": (duck_config, DuckDBReader(duck_config, None)),
        "snowflake": (sf_config, SnowflakeReader(sf_config, fakesnow_server)),
    }
    for warehouse, (config, reader) in readers.items():
        stats, error, seconds = _run_consumer(config)
        timings[f"consumer + {warehouse}"] = seconds
        if error:
            errors[warehouse] = error
        parked = dict(stats.parked) if stats is not None else {}
        # both consumers share the dead-letter topics: each sees only the letters it added
        all_dead = _dead_letters(bootstrap, config)
        dead = {k: v for k, v in all_dead.items() if v[0] not in seen_dead}
        seen_dead |= {v[0] for v in all_dead.values()}
        t0 = time.monotonic()
        observations += _observe(
            warehouse, pipeline, config, reader, parked, dead, error, column_types
        )
        timings[f"judging {warehouse}"] = time.monotonic() - t0

    table = readme_table(CASES, observations, connect, column_types)
    readme_path = Path(__file__).resolve().parents[2] / "docs" / "type-mapping.md"
    readme = readme_path.read_text()
    if os.environ.get("CDC_UPDATE_TYPE_TABLE") == "1":
        readme = replace_section(readme, table)
        readme_path.write_text(readme)
    report_path = pipeline.workdir / "type_matrix_report.txt"
    report_path.write_text(_full_report(observations, connect, column_types, timings, errors))
    print(f"\ntype matrix: full report in {report_path}; timings {timings}")

    message = failure_table(observations)
    if errors:
        message += "\n\nconsumer errors:\n" + "\n".join(f"{w}: {e}" for w, e in errors.items())
    assert not any(o.unexpected for o in observations) and not errors, message
    assert current_section(readme) == table, (
        "docs/type-mapping.md's type table is out of date: run with CDC_UPDATE_TYPE_TABLE=1 to "
        "rewrite it"
    )


def _full_report(
    observations: Sequence[Observation],
    connect: Mapping[str, str | None],
    columns: Mapping[tuple[str, str], str | None],
    timings: Mapping[str, float],
    errors: Mapping[str, str],
) -> str:
    lines = [f"timings: { {k: round(v, 1) for k, v in timings.items()} }", ""]
    for w, e in errors.items():
        lines.append(f"ERROR {w}: {e}")
    for t in CASES:
        lines.append(
            f"## {t.table} {t.type}: connect={connect.get(t.name)} "
            f"duckdb={columns.get(('duckdb', t.name))} "
            f"snowflake={columns.get(('snowflake', t.name))}"
        )
        for o in observations:
            if o.type == t.name:
                flag = "!!" if o.unexpected else "  "
                lines.append(
                    f"{flag} {o.warehouse:9} {o.table:24} {short(o.value, 50):50} {o.phase:22} "
                    f"expected={o.expected:12} got={o.outcome:14} {short(o.detail, 300)}"
                )
    return "\n".join(lines) + "\n"
