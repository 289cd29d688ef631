"""cdc.config: loading, interpolation, helpers, and the exact form of every error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdc.config import Config, ConfigError, dump_example_config, load_config, parse_config
from cdc.model import TableId
from warehouse.base import Scd2Options
from warehouse.duckdb.settings import DuckDBSettings

VALID = """\
source:
  host: 127.0.0.1
  port: 5432
  database: shop
  user: postgres
  password: ${PGPASSWORD}
  slot_name: cdc_slot
  publication_name: cdc_pub
  topic_prefix: cdc
  snapshot_mode: initial
  heartbeat_interval_ms: 10000
  connector_name: cdc-postgres
  debezium:
    snapshot.fetch.size: 1000
    database.sslpassword: ssl-pw
kafka:
  bootstrap_servers: 127.0.0.1:9092
  group_id: cdc-warehouse
  dlq_topic_suffix: .dlq
  client:
    security.protocol: SASL_SSL
    sasl.password: kafka-pw
    session.timeout.ms: 6000
    enable.auto.commit: false
warehouse:
  type: duckdb
  path: warehouse.duckdb
  schema: main
consumer:
  batch_size: 5000
  linger_ms: 500
  metadata_prefix: _cdc_
tables:
  - name: public.customers
    mode: mirror
    soft_delete: false
    target: customers
  - name: orders
    soft_delete: true
  - name: sales.order_lines
    target: lines
connect:
  url: http://127.0.0.1:8083/
"""

ENV = {"PGPASSWORD": "pg-secret-1"}


def write(tmp_path: Path, text: str, name: str = "cdc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="cdc.yaml", env=ENV if env is None else env)
    return str(info.value).splitlines()


def test_valid_file_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), env=ENV)
    assert isinstance(config, Config)
    assert config.source.host == "127.0.0.1"
    assert config.source.password.get_secret_value() == "pg-secret-1"
    assert config.source.debezium_extras() == {
        "snapshot.fetch.size": "1000",
        "database.sslpassword": "ssl-pw",
    }
    assert config.kafka.client_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_SSL",
        "sasl.password": "kafka-pw",
        "session.timeout.ms": 6000,
        "enable.auto.commit": False,
    }
    assert config.connect is not None and config.connect.url == "http://127.0.0.1:8083"
    assert config.consumer.batch_size == 5000
    assert [t.name for t in config.tables] == [
        "public.customers",
        "public.orders",
        "sales.order_lines",
    ]


def test_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    config = load_config(write(sub, VALID), env=ENV)
    assert config.config_dir == sub.resolve()
    assert isinstance(config.warehouse, DuckDBSettings)
    assert config.warehouse.path == sub.resolve() / "warehouse.duckdb"
    assert config.warehouse.schema_name == "main"

    absolute = VALID.replace("path: warehouse.duckdb", f"path: {tmp_path / 'abs.duckdb'}")
    assert load_config(write(sub, absolute), env=ENV).warehouse.path == tmp_path / "abs.duckdb"
    memory = VALID.replace("path: warehouse.duckdb", "path: ':memory:'")
    assert str(load_config(write(sub, memory), env=ENV).warehouse.path) == ":memory:"


def test_table_helpers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), env=ENV)
    customers = config.table("public.customers")
    assert config.table("customers") is customers
    assert config.table(TableId("public", "customers")) is customers
    assert customers.source == TableId("public", "customers")
    assert customers.target_name == "customers"
    assert config.table("orders").target_name == "orders"
    lines = config.table("sales.order_lines")
    assert lines.source == TableId("sales", "order_lines")
    assert lines.target_name == "lines"
    assert config.topic_for(lines) == "cdc.sales.order_lines"
    assert config.dlq_topic_for(lines) == "cdc.sales.order_lines.dlq"
    with pytest.raises(KeyError, match=r"public\.nope"):
        config.table("nope")

    target = config.table_target(config.table("orders"))
    assert (target.name, target.mode, target.soft_delete) == ("orders", "mirror", True)
    assert target.metadata.lsn == "_cdc_lsn" and target.metadata.deleted == "_cdc_deleted"


def test_defaults_for_optional_sections() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            source: {host: db, database: shop, user: u}
            kafka: {bootstrap_servers: "k:9092"}
            warehouse: {type: duckdb}
            tables: [{name: t}]
            """
        ),
        env={},
    )
    assert config.source.port == 5432
    assert config.source.password.get_secret_value() == ""
    assert config.source.slot_name == "cdc_slot"
    assert config.source.snapshot_mode == "initial"
    assert config.kafka.group_id == "cdc-warehouse"
    assert config.consumer.linger_ms == 500
    assert config.consumer.metadata_prefix == "_cdc_"
    assert config.connect is None


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), env=ENV)
    with pytest.raises(Exception, match="frozen"):
        config.source.host = "elsewhere"


# -- interpolation ----------------------------------------------------------------------------


def test_env_interpolation_with_defaults() -> None:
    text = (
        VALID.replace("host: 127.0.0.1", "host: ${PGHOST:-db.internal}")
        .replace("port: 5432", "port: ${PGPORT:-6543}")
        .replace("group_id: cdc-warehouse", "group_id: grp-${ENVNAME}-x")
    )
    config = parse_config(text, env={**ENV, "ENVNAME": "prod"})
    assert config.source.host == "db.internal"
    assert config.source.port == 6543
    assert config.kafka.group_id == "grp-prod-x"

    config = parse_config(text, env={**ENV, "ENVNAME": "dev", "PGHOST": "h2", "PGPORT": "1"})
    assert (config.source.host, config.source.port) == ("h2", 1)


def test_interpolated_secret_cannot_break_yaml() -> None:
    nasty = "a: b\n  - ]{'\"#"
    config = parse_config(VALID, env={"PGPASSWORD": nasty})
    assert config.source.password.get_secret_value() == nasty


def test_literal_dollar_brace_escape() -> None:
    config = parse_config(VALID.replace("user: postgres", "user: $${NOT_A_VAR}"), env=ENV)
    assert config.source.user == "${NOT_A_VAR}"


def test_missing_env_var_names_variable_and_line() -> None:
    assert errors_of(VALID, env={}) == [
        "cdc.yaml:6: source.password: environment variable PGPASSWORD is not set "
        "(set it, or give a default: ${PGPASSWORD:-default})"
    ]


def test_malformed_reference() -> None:
    assert errors_of(VALID.replace("user: postgres", "user: ${1BAD}")) == [
        "cdc.yaml:5: source.user: malformed reference '${1BAD}': use ${NAME} or ${NAME:-default}"
    ]


# -- errors: exact file:line: path: message ---------------------------------------------------


def test_unknown_key_with_suggestion() -> None:
    assert errors_of(VALID.replace("  port: 5432", "  prot: 5432")) == [
        "cdc.yaml:3: source.prot: unknown key (did you mean 'port'?)"
    ]
    assert errors_of(VALID.replace("  schema: main", "  scheme: main")) == [
        "cdc.yaml:28: warehouse.scheme: unknown key (did you mean 'schema'?)"
    ]
    assert errors_of(VALID + "zzz: 1\n") == ["cdc.yaml:44: zzz: unknown key"]


def test_wrong_enum_value() -> None:
    text = VALID.replace("  - name: orders\n", "  - name: orders\n    mode: scd3\n")
    assert errors_of(text) == [
        "cdc.yaml:39: tables[1].mode: Input should be 'mirror' or 'scd2' (got 'scd3')"
    ]
    text = VALID.replace("snapshot_mode: initial", "snapshot_mode: sometimes")
    assert errors_of(text) == [
        "cdc.yaml:10: source.snapshot_mode: Input should be 'initial', 'no_data', 'never', "
        "'always', 'when_needed' or 'initial_only' (got 'sometimes')"
    ]


def test_wrong_type() -> None:
    assert errors_of(VALID.replace("batch_size: 5000", "batch_size: lots")) == [
        "cdc.yaml:30: consumer.batch_size: Input should be a valid integer, "
        "unable to parse string as an integer (got 'lots')"
    ]
    assert errors_of(VALID.replace("batch_size: 5000", "batch_size: 0")) == [
        "cdc.yaml:30: consumer.batch_size: Input should be greater than or equal to 1 (got 0)"
    ]


def test_missing_required_key_uses_parent_line() -> None:
    assert errors_of(VALID.replace("  database: shop\n", "")) == [
        "cdc.yaml:1: source.database: required key is missing"
    ]
    assert errors_of(VALID.replace("  - name: orders\n", "  - target: orders2\n")) == [
        "cdc.yaml:38: tables[1].name: required key is missing"
    ]
    no_type = VALID.replace("  type: duckdb\n", "")
    assert errors_of(no_type) == ["cdc.yaml:25: warehouse.type: required key is missing"]


def test_unknown_warehouse_type() -> None:
    assert errors_of(VALID.replace("type: duckdb", "type: oracle")) == [
        "cdc.yaml:26: warehouse.type: Input should be 'duckdb', 'snowflake' (got 'oracle')"
    ]


SNOWFLAKE = VALID.replace(
    "  type: duckdb\n  path: warehouse.duckdb\n  schema: main\n",
    "  type: snowflake\n  account: myorg-acct\n  user: CDC\n  password: ${SF_PW}\n"
    "  database: ANALYTICS\n  schema: RAW\n  role: REPLICATOR\n",
)


def test_snowflake_warehouse_settings_load_with_the_secret_hidden(tmp_path: Path) -> None:
    config = parse_config(SNOWFLAKE, env={**ENV, "SF_PW": "sf-secret-9"}, config_dir=tmp_path)
    wh = config.warehouse
    assert wh.type == "snowflake"
    assert (wh.account, wh.user, wh.database, wh.schema_name, wh.role) == (
        "myorg-acct", "CDC", "ANALYTICS", "RAW", "REPLICATOR"
    )  # fmt: skip
    assert wh.password is not None and wh.password.get_secret_value() == "sf-secret-9"
    assert "sf-secret-9" not in repr(config) + str(config)
    keyed = SNOWFLAKE.replace("  password: ${SF_PW}\n", "  private_key_path: keys/cdc.p8\n")
    config = parse_config(keyed, env=ENV, config_dir=tmp_path)
    assert config.warehouse.private_key_path == tmp_path / "keys" / "cdc.p8"


def test_snowflake_warehouse_needs_exactly_one_way_to_authenticate() -> None:
    message = (
        "cdc.yaml:25: warehouse: give exactly one of `password` and `private_key_path` "
        "(key-pair authentication)"
    )
    assert errors_of(SNOWFLAKE.replace("  password: ${SF_PW}\n", "")) == [message]
    both = SNOWFLAKE.replace("  role:", "  private_key_path: /k.p8\n  role:")
    assert errors_of(both, env={**ENV, "SF_PW": "x"}) == [message]
    assert errors_of(
        SNOWFLAKE.replace("  account: myorg-acct\n", ""), env={**ENV, "SF_PW": "x"}
    ) == ["cdc.yaml:25: warehouse.account: required key is missing"]


def test_duplicate_table_names() -> None:
    text = VALID.replace("  - name: orders\n", "  - name: customers\n")
    assert errors_of(text) == [
        "cdc.yaml:38: tables[1].name: duplicate table 'public.customers' "
        "(already tables[0] at line 34)"
    ]
    # reported even when another table entry is invalid
    text = VALID.replace("  - name: orders\n", "  - name: customers\n    mode: x\n")
    assert errors_of(text) == [
        "cdc.yaml:38: tables[1].name: duplicate table 'public.customers' "
        "(already tables[0] at line 34)",
        "cdc.yaml:39: tables[1].mode: Input should be 'mirror' or 'scd2' (got 'x')",
    ]


def test_duplicate_targets() -> None:
    text = VALID.replace("    target: lines", "    target: Orders")
    assert errors_of(text) == [
        "cdc.yaml:41: tables[2].target: warehouse table 'Orders' is already the target of "
        "tables[1] at line 38"
    ]


def test_bad_slot_name() -> None:
    assert errors_of(VALID.replace("slot_name: cdc_slot", "slot_name: Bad-Slot")) == [
        "cdc.yaml:7: source.slot_name: must be a valid replication slot name: 1-63 characters "
        "of a-z, 0-9 and _ (got 'Bad-Slot')"
    ]
    long_name = "s" * 64
    assert len(errors_of(VALID.replace("slot_name: cdc_slot", f"slot_name: {long_name}"))) == 1


def test_no_tables() -> None:
    text = VALID.split("tables:")[0] + "tables: []\n"
    assert errors_of(text) == [
        "cdc.yaml:33: tables: List should have at least 1 item after validation, not 0"
    ]


def test_every_problem_listed_in_line_order() -> None:
    text = (
        VALID.replace("  port: 5432", "  prot: 5432")
        .replace("batch_size: 5000", "batch_size: lots")
        .replace("url: http://127.0.0.1:8083/", "url: ftp://x")
    )
    lines = errors_of(text, env={})
    assert [line.split(":")[1] for line in lines] == ["3", "6", "30", "43"]
    assert (
        lines[-1] == "cdc.yaml:43: connect.url: must be an http:// or https:// URL (got 'ftp://x')"
    )


def test_yaml_syntax_error_and_odd_files(tmp_path: Path) -> None:
    lines = errors_of("source:\n  host: [unclosed\nkafka: {}\n")
    assert len(lines) == 1 and lines[0].startswith("cdc.yaml:3: YAML syntax error:")
    assert errors_of("") == ["cdc.yaml:1: the file is empty"]
    assert errors_of("- a\n- b\n") == ["cdc.yaml:1: the file must hold a mapping of sections"]
    assert errors_of(VALID.replace("  port: 5432\n", "  port: 5432\n  port: 5433\n")) == [
        "cdc.yaml:4: source.port: duplicate key"
    ]
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml:1: file not found"):
        load_config(missing)


def test_error_names_the_file_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  port: 5432", "  prot: 5432"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    assert str(info.value) == f"{path}:3: source.prot: unknown key (did you mean 'port'?)"
    assert info.value.problems[0].line == 3
    assert info.value.problems[0].path == "source.prot"


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_not_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), env=ENV)
    text = repr(config) + str(config) + repr(config.kafka) + repr(config.source)
    for secret in ("pg-secret-1", "kafka-pw", "ssl-pw"):
        assert secret not in text
    assert "SASL_SSL" in text  # ordinary settings stay visible
    assert config.kafka.client["sasl.password"].__class__.__name__ == "SecretStr"
    assert config.kafka.client["session.timeout.ms"] == 6000


def test_secrets_not_in_errors() -> None:
    text = (
        VALID.replace("  port: 5432", "  port: ${PGPASSWORD}")
        .replace("sasl.password: kafka-pw", "sasl.password: [kafka-pw]")
        .replace("database.sslpassword: ssl-pw", "database.sslpassword: [ssl-pw]")
    )
    message = "\n".join(errors_of(text))
    assert "kafka-pw" not in message and "ssl-pw" not in message and "pg-secret-1" not in message
    assert "cdc.yaml:22: kafka.client.sasl.password: must be a string" in message
    # a value read from the environment is shown as written, never resolved
    assert (
        "cdc.yaml:3: source.port: Input should be a valid integer, unable to parse string as an "
        "integer (from '${PGPASSWORD}')" in message
    )


def test_secret_password_wrong_type_hides_input() -> None:
    lines = errors_of(VALID.replace("password: ${PGPASSWORD}", "password: {a: pg-secret-2}"))
    assert lines == ["cdc.yaml:6: source.password: Input should be a valid string"]


# -- example ------------------------------------------------------------------------------------


def test_example_config_validates(tmp_path: Path) -> None:
    text = dump_example_config()
    assert text.startswith("#")
    config = load_config(write(tmp_path, text), env={})
    assert config.tables[0].source == TableId("public", "customers")
    assert config.source.password.get_secret_value() == ""
    assert load_config(write(tmp_path, text), env={"PGPASSWORD": "x"}).source.password


# -- scd2 tables --------------------------------------------------------------------------------


def test_scd2_table_options_reach_the_target() -> None:
    text = VALID.replace(
        "  - name: sales.order_lines\n",
        "  - name: sales.order_lines\n    mode: scd2\n    scd2:\n      granularity: every_change\n"
        "      track: [status, total]\n      valid_from: starts\n",
    )
    config = parse_config(text, file="cdc.yaml", env=ENV)
    target = config.table_target(config.table("sales.order_lines"))
    assert target.mode == "scd2"
    assert target.scd2 == Scd2Options(
        valid_from="starts", granularity="every_change", track=("status", "total")
    )
    # mode scd2 without options: the defaults
    lines = "  - name: sales.order_lines\n"
    plain = parse_config(VALID.replace(lines, lines + "    mode: scd2\n"), file="cdc.yaml", env=ENV)
    assert plain.table_target(plain.table("sales.order_lines")).scd2 == Scd2Options()


def test_scd2_option_errors_name_the_line() -> None:
    both = VALID.replace(
        "  - name: sales.order_lines\n", "  - name: sales.order_lines\n    scd2: {}\n"
    )
    assert errors_of(both) == [
        "cdc.yaml:40: tables[2]: has `scd2` options but mode is mirror: set `mode: scd2` or "
        "remove `scd2`"
    ]
    soft = VALID.replace(
        "  - name: sales.order_lines\n",
        "  - name: sales.order_lines\n    mode: scd2\n    soft_delete: true\n",
    )
    assert errors_of(soft)[0].startswith("cdc.yaml:40: tables[2]: soft_delete applies to mirror")
    bad = VALID.replace(
        "  - name: sales.order_lines\n",
        "  - name: sales.order_lines\n    mode: scd2\n    scd2:\n      track: [a, a]\n"
        "      valid_to: x y\n",
    )
    assert errors_of(bad) == [
        "cdc.yaml:43: tables[2].scd2.track: lists a more than once",
        "cdc.yaml:44: tables[2].scd2.valid_to: must be a plain PostgreSQL identifier: a letter "
        "or _ then letters, digits, _ or $ (at most 63 characters) (got 'x y')",
    ]
    same = VALID.replace(
        "  - name: sales.order_lines\n",
        "  - name: sales.order_lines\n    mode: scd2\n    scd2:\n      valid_to: valid_from\n",
    )
    assert errors_of(same) == [
        "cdc.yaml:42: tables[2].scd2: valid_from, valid_to and is_current must be three "
        "different column names (got valid_from, valid_from, is_current)"
    ]
