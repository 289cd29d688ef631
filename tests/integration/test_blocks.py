"""Prefect blocks: registered like `prefect block register -m blocks` does, saved, and
referenced from cdc.yaml in place of a section, on a real (temporary, local) Prefect server
started by Prefect's test harness."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness
from pydantic import SecretStr

from blocks import (
    BLOCKS,
    DuckDBWarehouse,
    KafkaCluster,
    PostgresSource,
    SnowflakeWarehouse,
)
from cdc.config import ConfigError, KafkaConfig, SourceConfig, parse_config
from warehouse.duckdb.settings import DuckDBSettings
from warehouse.snowflake.settings import SnowflakeSettings

pytestmark = pytest.mark.integration

TABLES = "tables:\n  - name: public.customers\n"


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


def test_the_cli_registers_every_block_type(prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Successfully registered {len(BLOCKS)} blocks" in " ".join(out.stdout.split())


def test_a_section_can_be_a_saved_block(prefect_api: str, tmp_path: Path) -> None:
    source = SourceConfig(host="db.internal", database="shop", user="cdc",
                          password=SecretStr("pg-secret"))  # fmt: skip
    PostgresSource(settings=source).save("prod", overwrite=True)
    KafkaCluster(settings=KafkaConfig(bootstrap_servers="k1:9092", group_id="g")).save(
        "prod", overwrite=True
    )
    snowflake = SnowflakeSettings.model_validate(
        {"type": "snowflake", "account": "org-acc", "user": "CDC", "password": "sf-secret",
         "database": "ANALYTICS", "schema": "RAW"}
    )  # fmt: skip
    SnowflakeWarehouse(settings=snowflake).save("prod", overwrite=True)
    text = (
        "source: {block: cdc-postgresql-source/prod}\n"
        "kafka: {block: cdc-kafka-cluster/prod}\n"
        "warehouse: {block: cdc-snowflake-warehouse/prod}\n" + TABLES
    )
    config = parse_config(text, config_dir=tmp_path)
    assert config.source == source
    assert config.source.password.get_secret_value() == "pg-secret"
    assert config.kafka.bootstrap_servers == "k1:9092"
    assert config.warehouse == snowflake
    assert config.warehouse.password is not None
    assert config.warehouse.password.get_secret_value() == "sf-secret"


def test_a_relative_duckdb_path_in_a_block_resolves_against_the_config_folder(
    prefect_api: str, tmp_path: Path
) -> None:
    settings = DuckDBSettings.model_validate({"type": "duckdb", "path": "w.duckdb"})
    DuckDBWarehouse(settings=settings).save("local", overwrite=True)
    text = (
        "source: {host: h, database: d, user: u}\nkafka: {bootstrap_servers: 'k:9092'}\n"
        "warehouse: {block: cdc-duckdb-warehouse/local}\n" + TABLES
    )
    config = parse_config(text, config_dir=tmp_path)
    assert config.warehouse.type == "duckdb"


def test_a_missing_or_mismatched_block_names_the_line(prefect_api: str, tmp_path: Path) -> None:
    KafkaCluster(settings=KafkaConfig(bootstrap_servers="k:9092")).save("only", overwrite=True)
    text = (
        "source: {host: h, database: d, user: u}\n"
        "kafka: {block: cdc-kafka-cluster/nope}\n"
        "warehouse: {block: cdc-kafka-cluster/only}\n" + TABLES
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="cdc.yaml", config_dir=tmp_path)
    problems = {p.path: (p.line, p.message) for p in info.value.problems}
    assert (
        problems["kafka"][0] == 2
        and "'cdc-kafka-cluster/nope' could not be loaded" in (problems["kafka"][1])
    )
    assert problems["warehouse"][0] == 3
    assert "holds section `kafka`, not `warehouse`" in problems["warehouse"][1]
    with pytest.raises(ConfigError, match="give the block as <block type>/<name>"):
        parse_config(text.replace("cdc-kafka-cluster/nope", "nope"), config_dir=tmp_path)
