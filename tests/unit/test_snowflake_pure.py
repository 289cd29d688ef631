"""warehouse.snowflake without a server: settings, error classification, type mapping, staging
types and the JSON text of staged intervals and arrays."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr, ValidationError
from snowflake.connector import errors as sf
from sqlglot import exp

from cdc.model import ColumnType, Interval, Kind
from warehouse.arrow import arrow_type, column_array
from warehouse.base import (
    DataError,
    IncompatibleSchemaChangeError,
    TerminalWarehouseError,
    TransientWarehouseError,
)
from warehouse.snowflake.errors import classify, map_error
from warehouse.snowflake.settings import SnowflakeSettings
from warehouse.snowflake.staging import (
    create_staging_table,
    json_text,
    parquet_ready,
    stage_arrow,
    staged_value,
    staging_type,
)
from warehouse.snowflake.types import render_type, snowflake_type
from warehouse.sql import TableRef

SECRET = "hunter2-Sup3r-secret"


def settings(**overrides: Any) -> SnowflakeSettings:
    base: dict[str, Any] = {
        "account": "acme-eu1",
        "user": "CDC",
        "role": "CDC_ROLE",
        "warehouse": "CDC_WH",
        "database": "ANALYTICS",
        "schema": "RAW",
        "password": SecretStr(SECRET),
    }
    base.update(overrides)
    return SnowflakeSettings(**base)


# ---- settings -----------------------------------------------------------------------------


def test_connect_kwargs_carry_every_setting_and_bind_on_the_server() -> None:
    kwargs = settings().connect_kwargs("apply", "orders")
    assert kwargs["account"] == "acme-eu1"
    assert kwargs["user"] == "CDC"
    assert kwargs["role"] == "CDC_ROLE"
    assert kwargs["warehouse"] == "CDC_WH"
    assert kwargs["database"] == "ANALYTICS"
    assert kwargs["schema"] == "RAW"
    assert kwargs["password"] == SECRET
    assert kwargs["paramstyle"] == "qmark"  # pyformat would put values into the SQL text
    assert "host" not in kwargs and "port" not in kwargs and "authenticator" not in kwargs


def test_query_tag_is_json_naming_app_job_and_table() -> None:
    kwargs = settings(query_tag_prefix="cdc-prod").connect_kwargs("snapshot", 'we"ird t')
    tag = json.loads(kwargs["session_parameters"]["QUERY_TAG"])
    assert tag == {"app": "cdc-prod", "job": "snapshot", "table": 'we"ird t'}
    no_table = json.loads(
        settings().connect_kwargs("tier", None)["session_parameters"]["QUERY_TAG"]
    )
    assert no_table == {"app": "cdc-replicator", "job": "tier", "table": None}


def test_session_parameters_are_merged_never_replaced() -> None:
    s = settings(session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "X": 1})
    params = s.connect_kwargs("apply", "t", {"TIMEZONE": "UTC", "X": 2})["session_parameters"]
    assert params["CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED"] is False
    assert params["TIMEZONE"] == "UTC"
    assert params["X"] == 2  # the call's parameters win over the settings'
    assert set(params) == {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED", "TIMEZONE", "X", "QUERY_TAG"}
    assert s.session_parameters == {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "X": 1}


def test_fakesnow_kwargs_keep_their_session_parameters_and_endpoint() -> None:
    fake = {
        "user": "fake",
        "password": "snow",
        "account": "fakesnow",
        "host": "127.0.0.1",
        "port": 4242,
        "protocol": "http",
        "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        "network_timeout": 1,
    }
    kwargs = SnowflakeSettings.from_fakesnow(fake, database="DB", schema="S").connect_kwargs(
        "apply", "t"
    )
    for key in ("user", "password", "account", "host", "port", "protocol", "network_timeout"):
        assert kwargs[key] == fake[key]
    assert kwargs["session_parameters"]["CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED"] is False
    assert "QUERY_TAG" in kwargs["session_parameters"]


def test_key_pair_auth_uses_the_key_file_and_no_password(tmp_path: Path) -> None:
    key = tmp_path / "rsa_key.p8"
    s = settings(password=None, private_key_path=key, private_key_passphrase=SecretStr(SECRET))
    kwargs = s.connect_kwargs("apply", "t")
    assert kwargs["authenticator"] == "SNOWFLAKE_JWT"
    assert kwargs["private_key_file"] == str(key)
    assert kwargs["private_key_file_pwd"] == SECRET
    assert "password" not in kwargs
    assert SECRET not in repr(s) and SECRET not in str(s)


def test_exactly_one_authentication_method_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of password or private_key_path"):
        settings(password=None)
    with pytest.raises(ValidationError, match="exactly one"):
        settings(private_key_path=tmp_path / "k.p8")


def test_the_secret_is_never_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    s = settings()
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in repr(s.password) and SECRET not in f"{s.password}"
    assert SECRET not in s.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings %s / %r", s, s)
    assert "acme-eu1" in caplog.text  # the log line did render the settings
    assert SECRET not in caplog.text


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        settings().account = "other"  # type: ignore[misc]


def test_an_overlong_query_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="Snowflake allows 2000"):
        settings().connect_kwargs("apply", "t" * 2100)


# ---- errors -------------------------------------------------------------------------------

# (exception, expected class) — codes measured on fakesnow (FINDINGS.md §13) or documented
CASES: list[tuple[str, BaseException, type[Exception]]] = [
    ("syntax 1003/42000", sf.ProgrammingError(msg="x", errno=1003, sqlstate="42000"),
     TerminalWarehouseError),
    ("missing table 2003/42S02", sf.ProgrammingError(msg="x", errno=2003, sqlstate="42S02"),
     TerminalWarehouseError),
    ("missing stage 2003/02000", sf.ProgrammingError(msg="x", errno=2003, sqlstate="02000"),
     TerminalWarehouseError),
    ("fakesnow missing column 2043/02000",
     sf.ProgrammingError(msg="x", errno=2043, sqlstate="02000"), TerminalWarehouseError),
    ("invalid identifier 904/42000", sf.ProgrammingError(msg="x", errno=904, sqlstate="42000"),
     TerminalWarehouseError),
    ("COPY shape 2019/0A000", sf.ProgrammingError(msg="x", errno=2019, sqlstate="0A000"),
     TerminalWarehouseError),
    ("stage URL 1011/42601", sf.ProgrammingError(msg="x", errno=1011, sqlstate="42601"),
     TerminalWarehouseError),
    ("not implemented 9999/99999", sf.ProgrammingError(msg="x", errno=9999, sqlstate="99999"),
     TerminalWarehouseError),
    ("bad value 100035/22007", sf.ProgrammingError(msg="x", errno=100035, sqlstate="22007"),
     DataError),
    ("numeric value 100038/22018", sf.ProgrammingError(msg="x", errno=100038, sqlstate="22018"),
     DataError),
    ("overflow 100046/22003", sf.ProgrammingError(msg="x", errno=100046, sqlstate="22003"),
     DataError),
    ("bad JSON 100069/22P02", sf.ProgrammingError(msg="x", errno=100069, sqlstate="22P02"),
     DataError),
    ("NULL into NOT NULL 100072/22000",
     sf.ProgrammingError(msg="x", errno=100072, sqlstate="22000"), DataError),
    ("too long 100074/22000", sf.ProgrammingError(msg="x", errno=100074, sqlstate="22000"),
     DataError),
    ("unknown code, sqlstate class 22", sf.ProgrammingError(msg="x", errno=123, sqlstate="22012"),
     DataError),
    ("unknown code, sqlstate class 23", sf.ProgrammingError(msg="x", errno=123, sqlstate="23505"),
     DataError),
    ("connect failed 250001", sf.OperationalError(msg="x", errno=250001), TransientWarehouseError),
    ("connection closed 250002", sf.DatabaseError(msg="x", errno=250002),
     TransientWarehouseError),
    ("request failed 250003", sf.OperationalError(msg="x", errno=250003),
     TransientWarehouseError),
    ("server failed 250005", sf.DatabaseError(msg="x", errno=250005), TransientWarehouseError),
    ("bad password 390100/28000", sf.DatabaseError(msg="x", errno=390100, sqlstate="28000"),
     TerminalWarehouseError),
    ("bad JWT 390144/28000", sf.DatabaseError(msg="x", errno=390144, sqlstate="28000"),
     TerminalWarehouseError),
    ("expired JWT 394301/08001", sf.DatabaseError(msg="x", errno=394301, sqlstate="08001"),
     TerminalWarehouseError),
    ("session expired 390112", sf.DatabaseError(msg="x", errno=390112, sqlstate="08001"),
     TransientWarehouseError),
    ("master token expired 390114", sf.DatabaseError(msg="x", errno=390114),
     TransientWarehouseError),
    ("unknown code, sqlstate class 08", sf.DatabaseError(msg="x", errno=7, sqlstate="08003"),
     TransientWarehouseError),
    ("statement timeout sqlstate 57014", sf.ProgrammingError(msg="x", errno=630, sqlstate="57014"),
     TransientWarehouseError),
    ("txn rollback sqlstate 40001", sf.ProgrammingError(msg="x", errno=5, sqlstate="40001"),
     TransientWarehouseError),
    ("unknown code, sqlstate class 42", sf.ProgrammingError(msg="x", errno=5, sqlstate="42501"),
     TerminalWarehouseError),
    ("unknown code, sqlstate class 28", sf.DatabaseError(msg="x", errno=5, sqlstate="28000"),
     TerminalWarehouseError),
    ("HTTP 500 as fakesnow sends it", sf.InternalServerError(errno=290500),
     TransientWarehouseError),
    ("HTTP 503", sf.ServiceUnavailableError(), TransientWarehouseError),
    ("HTTP 503 at connect (errno 250001)", sf.ServiceUnavailableError(errno=250001),
     TransientWarehouseError),
    ("HTTP 502", sf.BadGatewayError(), TransientWarehouseError),
    ("HTTP 504", sf.GatewayTimeoutError(), TransientWarehouseError),
    ("HTTP 408", sf.RequestTimeoutError(), TransientWarehouseError),
    ("HTTP 429", sf.TooManyRequests(), TransientWarehouseError),
    ("HTTP 403 at connect (errno 250001): wrong account",
     sf.ForbiddenError(errno=250001), TerminalWarehouseError),
    ("HTTP 400", sf.BadRequest(), TerminalWarehouseError),
    ("OperationalError without codes", sf.OperationalError(msg="x"), TransientWarehouseError),
    ("IntegrityError without codes", sf.IntegrityError(msg="x"), DataError),
    ("Python ConnectionError", ConnectionResetError("reset"), TransientWarehouseError),
    ("Python TimeoutError", TimeoutError("slow"), TransientWarehouseError),
    ("ProgrammingError without codes", sf.ProgrammingError(msg="x"), TerminalWarehouseError),
    ("anything else", RuntimeError("boom"), TerminalWarehouseError),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "expected"), [(e, x) for _, e, x in CASES],
                         ids=[name for name, _, _ in CASES])  # fmt: skip
def test_errors_are_classified_by_class_errno_and_sqlstate(
    exc: BaseException, expected: type[Exception]
) -> None:
    assert classify(exc) is expected
    mapped = map_error(exc, table="orders")
    assert type(mapped) is expected


def test_classification_ignores_the_message_text() -> None:
    misleading = sf.ProgrammingError(
        msg="Connection refused; timeout; NOT NULL; please retry", errno=1003, sqlstate="42000"
    )
    assert classify(misleading) is TerminalWarehouseError
    silent = sf.OperationalError(msg="syntax error: invalid identifier", errno=250003)
    assert classify(silent) is TransientWarehouseError


def test_the_errno_wins_over_a_contradicting_sqlstate() -> None:
    # auth rejection comes with 08001 for some JWT codes: still terminal, not a network blip
    assert classify(sf.DatabaseError(msg="x", errno=394301, sqlstate="08001")) is (
        TerminalWarehouseError
    )
    # a bad value is data even when the sqlstate is not class 22
    assert classify(sf.ProgrammingError(msg="x", errno=100072, sqlstate="02000")) is DataError


def test_mapped_errors_name_the_table_codes_and_what_to_do() -> None:
    data = map_error(
        sf.ProgrammingError(msg="Numeric value out of range", errno=100046, sqlstate="22003"),
        table="orders",
    )
    assert isinstance(data, DataError)
    assert data.table == "orders"
    text = str(data)
    assert "'orders'" in text and "errno=100046" in text and "sqlstate=22003" in text
    assert "Numeric value out of range" in text and "dead-letter" in text
    transient = str(map_error(sf.OperationalError(msg="down", errno=250001), table="t"))
    assert "retried with backoff" in transient and "offsets do not advance" in transient
    terminal = str(map_error(sf.ProgrammingError(msg="x", errno=2003, sqlstate="42S02"), table="t"))
    assert "retrying will not help" in terminal and "grants" in terminal


def test_a_warehouse_error_passes_through_unchanged() -> None:
    original = DataError("already mapped", table="t")
    assert map_error(original, table="other") is original


# ---- types --------------------------------------------------------------------------------

INT = ColumnType(Kind.INT32)
SPELLINGS: list[tuple[ColumnType, str]] = [
    (ColumnType(Kind.INT16), "DECIMAL(5, 0)"),
    (ColumnType(Kind.INT32), "DECIMAL(10, 0)"),
    (ColumnType(Kind.INT64), "DECIMAL(19, 0)"),
    (ColumnType(Kind.DECIMAL, precision=12, scale=2), "DECIMAL(12, 2)"),
    (ColumnType(Kind.DECIMAL, precision=38, scale=10), "DECIMAL(38, 10)"),
    (ColumnType(Kind.DECIMAL, precision=7), "DECIMAL(7, 0)"),
    (ColumnType(Kind.DECIMAL), "DECIMAL(38, 10)"),
    (ColumnType(Kind.VARDECIMAL), "DECIMAL(38, 10)"),
    (ColumnType(Kind.FLOAT32), "DOUBLE"),  # Snowflake's FLOAT (64-bit) by its synonym
    (ColumnType(Kind.FLOAT64), "DOUBLE"),
    (ColumnType(Kind.BOOLEAN), "BOOLEAN"),
    (ColumnType(Kind.TEXT), "VARCHAR"),
    (ColumnType(Kind.TEXT, length=20), "VARCHAR"),
    (ColumnType(Kind.ENUM, enum_values=("a", "b")), "VARCHAR"),
    (ColumnType(Kind.UUID), "VARCHAR"),
    (ColumnType(Kind.BYTES), "BINARY"),
    (ColumnType(Kind.DATE), "DATE"),
    (ColumnType(Kind.TIME), "TIME(6)"),
    (ColumnType(Kind.TIMETZ), "TIME(6)"),
    (ColumnType(Kind.TIMESTAMP), "TIMESTAMPNTZ(6)"),
    (ColumnType(Kind.TIMESTAMPTZ), "TIMESTAMPTZ(6)"),
    (ColumnType(Kind.INTERVAL), "VARIANT"),
    (ColumnType(Kind.JSON), "VARIANT"),
    (ColumnType(Kind.ARRAY, element=INT), "ARRAY"),
    (ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT)), "ARRAY"),
]


def test_every_kind_has_a_tested_spelling() -> None:
    assert {ct.kind for ct, _ in SPELLINGS} == set(Kind)


@pytest.mark.parametrize(("ct", "spelling"), SPELLINGS, ids=[str(ct) for ct, _ in SPELLINGS])
def test_snowflake_type_renders_the_exact_spelling(ct: ColumnType, spelling: str) -> None:
    rendered = render_type(snowflake_type(ct))
    assert rendered == spelling
    # the spelling is Snowflake SQL: sqlglot's Snowflake parser reads it back to the same type
    assert render_type(exp.DataType.build(rendered, dialect="snowflake")) == spelling


def test_synonyms_parse_to_the_snowflake_names() -> None:
    # NUMBER / TIMESTAMP_TZ / TIMESTAMP_NTZ / FLOAT are what Snowflake reports; sqlglot renders
    # the documented synonyms DECIMAL / TIMESTAMPTZ / TIMESTAMPNTZ / DOUBLE for the same types
    for name, spelling in [
        ("NUMBER(19,0)", "DECIMAL(19, 0)"),
        ("TIMESTAMP_TZ(6)", "TIMESTAMPTZ(6)"),
        ("TIMESTAMP_NTZ(6)", "TIMESTAMPNTZ(6)"),
        ("FLOAT", "DOUBLE"),
    ]:
        assert render_type(exp.DataType.build(name, dialect="snowflake")) == spelling


def test_decimal_precision_above_38_is_refused() -> None:
    with pytest.raises(IncompatibleSchemaChangeError, match="maximum precision 38"):
        snowflake_type(ColumnType(Kind.DECIMAL, precision=39, scale=2))
    with pytest.raises(IncompatibleSchemaChangeError, match="without an element type"):
        snowflake_type(ColumnType(Kind.ARRAY))


def test_types_are_fresh_objects() -> None:
    a = snowflake_type(ColumnType(Kind.TIMESTAMPTZ))
    a.set("expressions", [])
    assert render_type(snowflake_type(ColumnType(Kind.TIMESTAMPTZ))) == "TIMESTAMPTZ(6)"


# ---- staging types and staged values -----------------------------------------------------

ALL_TYPES = [ct for ct, _ in SPELLINGS]
STAGED_AS_TEXT = {Kind.INTERVAL, Kind.JSON, Kind.ARRAY, Kind.TEXT, Kind.ENUM, Kind.UUID}


@pytest.mark.parametrize("ct", ALL_TYPES, ids=[str(ct) for ct in ALL_TYPES])
def test_every_kind_stages_as_its_target_type_or_as_text(ct: ColumnType) -> None:
    staged = render_type(staging_type(parquet_ready(_one(ct)).schema.field(0).type))
    if ct.kind in STAGED_AS_TEXT:
        assert staged == "VARCHAR"
    else:
        assert staged == render_type(snowflake_type(ct))


def _one(ct: ColumnType) -> pa.Table:
    return pa.table({"c": column_array(ct, [None], table="t", column="c")})


def test_metadata_arrow_types_stage_too() -> None:
    assert render_type(staging_type(pa.int64())) == "DECIMAL(19, 0)"
    assert render_type(staging_type(pa.timestamp("us", tz="UTC"))) == "TIMESTAMPTZ(6)"
    assert render_type(staging_type(pa.large_string())) == "VARCHAR"
    assert render_type(staging_type(pa.large_binary())) == "BINARY"
    with pytest.raises(TerminalWarehouseError, match="can't be staged"):
        staging_type(pa.struct([("a", pa.int8())]))


def test_staged_value_parses_json_for_variant_and_array_only() -> None:
    c = exp.column("c0", table="s", quoted=True)
    variant = staged_value(c, snowflake_type(ColumnType(Kind.JSON)))
    assert variant.sql("snowflake") == 'PARSE_JSON("s"."c0")'
    array = staged_value(c, snowflake_type(ColumnType(Kind.ARRAY, element=INT)))
    assert array.sql("snowflake") == 'CAST(PARSE_JSON("s"."c0") AS ARRAY)'
    ts = staged_value(c, snowflake_type(ColumnType(Kind.TIMESTAMPTZ)))
    assert ts.sql("snowflake") == '"s"."c0"'


def test_staging_table_ddl_is_transient_and_quoted() -> None:
    ddl = create_staging_table(
        TableRef("RAW", "ORDERS_STG"),
        [('My "odd" col', staging_type(pa.string())), ("id", staging_type(pa.int64()))],
    )
    assert ddl.sql("snowflake") == (
        'CREATE TRANSIENT TABLE IF NOT EXISTS "RAW"."ORDERS_STG" '
        '("My ""odd"" col" VARCHAR, "id" DECIMAL(19, 0))'
    )


def test_intervals_and_arrays_become_exact_json_text() -> None:
    interval = ColumnType(Kind.INTERVAL)
    arrays = {
        "i": (ColumnType(Kind.ARRAY, element=INT), [[1, None, -3], [], None]),
        "d": (
            ColumnType(Kind.ARRAY, element=ColumnType(Kind.DECIMAL, precision=38, scale=10)),
            [[decimal.Decimal("12345678901234567890.0123456789")], None, None],
        ),
        "ts": (
            ColumnType(Kind.ARRAY, element=ColumnType(Kind.TIMESTAMPTZ)),
            [[dt.datetime(2024, 3, 9, 20, 29, 59, 123456, tzinfo=dt.UTC)], None, None],
        ),
        "b": (ColumnType(Kind.ARRAY, element=ColumnType(Kind.BYTES)), [[b"\x00\xff"], None, None]),
        "u": (
            ColumnType(Kind.ARRAY, element=ColumnType(Kind.UUID)),
            [[uuid.UUID(int=1)], None, None],
        ),
        "s": (ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT)), [["it's", '"$$;'], None, []]),
    }
    cols = {n: column_array(ct, vs, table="t", column=n) for n, (ct, vs) in arrays.items()}
    cols["iv"] = column_array(
        interval, [Interval(14, -3, 86_400_000_001), None, Interval(0, 0, -1)], table="t",
        column="iv",
    )  # fmt: skip
    out = parquet_ready(pa.table(cols)).to_pydict()
    assert out["i"] == ["[1,null,-3]", "[]", None]
    assert out["d"] == ['["12345678901234567890.0123456789"]', None, None]
    assert out["ts"] == ['["2024-03-09T20:29:59.123456+00:00"]', None, None]
    assert out["b"] == ['["00ff"]', None, None]
    assert out["u"] == ['["00000000-0000-0000-0000-000000000001"]', None, None]
    assert [None if v is None else json.loads(v) for v in out["s"]] == [["it's", '"$$;'], None, []]
    assert out["iv"] == [
        '{"months":14,"days":-3,"micros":86400000001}',
        None,
        '{"months":0,"days":0,"micros":-1}',
    ]
    assert json_text(None) is None


def test_parquet_ready_keeps_other_columns_as_they_are() -> None:
    t = pa.table({"a": pa.array([1], pa.int16()), "t": pa.array(["x"], pa.large_string())})
    assert parquet_ready(t).schema == t.schema
    assert arrow_type(ColumnType(Kind.INTERVAL)) == pa.month_day_nano_interval()


# ---- stage_arrow against a scripted cursor ------------------------------------------------

COPY_COLUMNS = ("file", "status", "rows_parsed", "rows_loaded", "error_limit", "errors_seen")


class ScriptedCursor:
    """Records each statement; answers COPY with ``copy_result``; raises ``fail`` on a prefix."""

    def __init__(
        self,
        copy_result: list[tuple[Any, ...]] | None = None,
        copy_columns: tuple[str, ...] = COPY_COLUMNS,
        fail: tuple[str, BaseException] | None = None,
    ) -> None:
        self.sent: list[str] = []
        self.copy_result = copy_result
        self.copy_columns = copy_columns
        self.fail = fail
        self.description: list[tuple[str, ...]] = []
        self._rows: list[tuple[Any, ...]] = []
        self.files_at_put: list[Path] = []
        self.statement_params: list[dict[str, Any] | None] = []

    def execute(self, sql: str, _statement_params: dict[str, Any] | None = None) -> None:
        self.sent.append(sql)
        self.statement_params.append(_statement_params)
        if self.fail is not None and sql.startswith(self.fail[0]):
            raise self.fail[1]
        self.description, self._rows = [("status",)], [("ok",)]
        if sql.startswith("PUT "):
            path = Path(sql.split("'")[1].removeprefix("file://"))
            assert path.exists()  # the file is there while PUT runs
            self.files_at_put.append(path)
        if sql.startswith("COPY INTO"):
            self.description = [(c,) for c in self.copy_columns]
            self._rows = list(self.copy_result or [])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


ODD_REF = TableRef("My Schema", 'Stg "x"')


def _loaded(n: int) -> list[tuple[Any, ...]]:
    return [("stg/b.parquet", "LOADED", n, n, 1, 0)]


def test_stage_arrow_deletes_puts_and_copies_with_quoted_names(tmp_path: Path) -> None:
    cur = ScriptedCursor(copy_result=_loaded(2))
    table = pa.table({"a b": pa.array([1, 2], pa.int64())})
    assert stage_arrow(cur, table, ODD_REF, 'St "g"', tmp_path) == 2
    delete, put, copy = cur.sent
    assert delete == 'DELETE FROM "My Schema"."Stg ""x"""'
    assert re.fullmatch(
        r"PUT 'file://.+/b_[0-9a-f]{32}\.parquet' @\"My Schema\"\.\"St \"\"g\"\"\"/stg__x_/ "
        r"AUTO_COMPRESS=FALSE OVERWRITE=TRUE",
        put,
    )
    file = put.split("'")[1].rsplit("/", 1)[1]
    assert copy == (
        f'COPY INTO "My Schema"."Stg ""x""" FROM @"My Schema"."St ""g"""/stg__x_/{file} '
        "FILE_FORMAT=(TYPE=PARQUET) MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE PURGE=TRUE"
    )
    assert list(tmp_path.iterdir()) == []  # the local file is removed after PUT


def test_stage_arrow_sends_the_statement_parameters_with_every_statement(
    tmp_path: Path,
) -> None:
    cur = ScriptedCursor(copy_result=_loaded(1))
    tag = {"QUERY_TAG": '{"app": "cdc-replicator", "job": "apply", "table": "t"}'}
    stage_arrow(cur, pa.table({"a": [1]}), ODD_REF, "S", tmp_path, statement_params=tag)
    assert cur.statement_params == [tag, tag, tag]  # DELETE, PUT, COPY
    cur = ScriptedCursor(copy_result=_loaded(1))
    stage_arrow(cur, pa.table({"a": [1]}), ODD_REF, "S", tmp_path)
    assert cur.statement_params == [None, None, None]


def test_stage_arrow_names_every_file_uniquely(tmp_path: Path) -> None:
    cur = ScriptedCursor(copy_result=_loaded(1))
    table = pa.table({"a": pa.array([1], pa.int64())})
    for _ in range(3):
        stage_arrow(cur, table, ODD_REF, "S", tmp_path)
    assert len({p.name for p in cur.files_at_put}) == 3


def test_stage_arrow_of_an_empty_batch_only_empties_the_staging_table(tmp_path: Path) -> None:
    cur = ScriptedCursor()
    assert stage_arrow(cur, pa.table({"a": pa.array([], pa.int64())}), ODD_REF, "S", tmp_path) == 0
    assert cur.sent == ['DELETE FROM "My Schema"."Stg ""x"""']
    cur = ScriptedCursor(copy_result=_loaded(1))
    stage_arrow(cur, pa.table({"a": [1]}), ODD_REF, "S", tmp_path, replace=False)
    assert [s.split()[0] for s in cur.sent] == ["PUT", "COPY"]


@pytest.mark.parametrize(
    ("result", "columns", "match"),
    [
        ([("Copy executed with 0 files processed.",)], ("status",), "loaded no file"),
        ([("stg/b.parquet", "LOAD_SKIPPED", 0, 0, 1, 0)], COPY_COLUMNS, "must be unique"),
        ([], COPY_COLUMNS, "did not load"),
        (_loaded(1), COPY_COLUMNS, "loaded 1 of 2 rows"),
    ],
    ids=["no file", "load skipped", "no rows", "row count mismatch"],
)
def test_stage_arrow_refuses_a_copy_that_did_not_load_the_batch(
    tmp_path: Path, result: list[tuple[Any, ...]], columns: tuple[str, ...], match: str
) -> None:
    cur = ScriptedCursor(copy_result=result, copy_columns=columns)
    with pytest.raises(TerminalWarehouseError, match=match):
        stage_arrow(cur, pa.table({"a": [1, 2]}), ODD_REF, "S", tmp_path)


def test_stage_arrow_maps_connector_errors_naming_the_target_table(tmp_path: Path) -> None:
    overflow = sf.ProgrammingError(msg="out of range", errno=100046, sqlstate="22003")
    cur = ScriptedCursor(fail=("COPY INTO", overflow))
    with pytest.raises(DataError) as caught:
        stage_arrow(cur, pa.table({"a": [1]}), ODD_REF, "S", tmp_path, table_name="orders")
    assert caught.value.table == "orders"
    assert caught.value.__cause__ is overflow
    down = sf.OperationalError(msg="refused", errno=250003)
    with pytest.raises(TransientWarehouseError):
        stage_arrow(ScriptedCursor(fail=("PUT", down)), pa.table({"a": [1]}), ODD_REF, "S",
                    tmp_path)  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # removed even when PUT fails


def test_a_value_json_cannot_hold_is_a_data_error() -> None:
    nan = column_array(
        ColumnType(Kind.ARRAY, element=ColumnType(Kind.FLOAT64)), [[float("nan")]], table="t",
        column="xs",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"'xs'.*can't be staged as JSON text") as caught:
        parquet_ready(pa.table({"xs": nan}), table_name="orders")
    assert caught.value.table == "orders"
