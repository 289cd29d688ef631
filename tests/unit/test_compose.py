"""docker-compose.yml (the production-like stack) and its cdc config, checked statically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "kafka", "connect", "kafka-ui", "consumer", "register-connector"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def test_every_service_exists(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= SERVICES


def test_images_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "image" not in service:
            continue
        image = service["image"]
        last = image.rsplit("/", 1)[-1]
        assert ":" in last or "@sha256:" in image, f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image} uses latest"
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert services["connect"]["image"].startswith("quay.io/debezium/connect:3.")
    assert services["kafka-ui"]["image"].startswith("provectuslabs/kafka-ui:")


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        targets = list(depends) if isinstance(depends, dict | list) else []
        for target in targets:
            assert target in services, f"{name} depends on unknown {target}"
    assert services["connect"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    register = services["register-connector"]["depends_on"]
    assert register["connect"]["condition"] == "service_healthy"


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "kafka", "connect"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"


def test_postgres_logical_decoding(services: dict[str, dict[str, Any]]) -> None:
    command = command_of(services["postgres"])
    assert command[0] == "postgres"
    assert "wal_level=logical" in command


def test_kafka_kraft(services: dict[str, dict[str, Any]]) -> None:
    env = services["kafka"]["environment"]
    assert {
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
    } <= set(env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}


def test_connect_and_ui_settings(services: dict[str, dict[str, Any]]) -> None:
    env = services["connect"]["environment"]
    for key in (
        "BOOTSTRAP_SERVERS",
        "GROUP_ID",
        "CONFIG_STORAGE_TOPIC",
        "OFFSET_STORAGE_TOPIC",
        "STATUS_STORAGE_TOPIC",
    ):
        assert env.get(key), key
    assert env["BOOTSTRAP_SERVERS"].split(":")[0] in services
    assert any(port.endswith(":8083") for port in services["connect"]["ports"])
    ui = services["kafka-ui"]["environment"]
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"].split(":")[0] == "kafka"
    assert ui["KAFKA_CLUSTERS_0_KAFKACONNECT_0_ADDRESS"] == "http://connect:8083"


def test_cdc_commands(services: dict[str, dict[str, Any]]) -> None:
    consumer = command_of(services["consumer"])
    assert consumer[:2] == ["cdc", "run"]
    assert consumer[consumer.index("--config") + 1] == "/config/cdc.yaml"
    register = command_of(services["register-connector"])
    assert register[:3] == ["cdc", "connector", "register"]
    for name in ("consumer", "register-connector"):
        assert "build" in services[name]
        mounts = [str(v).split(":")[:2] for v in services[name]["volumes"]]
        assert ["./deploy/cdc.compose.yaml", "/config/cdc.yaml"] in mounts


def test_ports_bound_to_localhost(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_dockerfile_installs_the_lock_file() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install --require-hashes --no-deps -r requirements/prod.lock" in text
    assert "pip install --no-deps /app" in text
    assert 'CMD ["cdc", "run", "--config", "/config/cdc.yaml"]' in text


def test_compose_config_names_compose_services(services: dict[str, dict[str, Any]]) -> None:
    config = load_config(ROOT / "deploy" / "cdc.compose.yaml", env={"PGPASSWORD": "x"})
    assert config.source.host in services
    for server in config.kafka.bootstrap_servers.split(","):
        host, port = server.rsplit(":", 1)
        assert host in services
        assert f"//{host}:{port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert config.connect is not None
    assert config.connect.url == "http://connect:8083"
    assert str(config.warehouse.path).startswith("/data/")
    consumer_volumes = [str(v) for v in services["consumer"]["volumes"]]
    assert any(v.endswith(":/data") for v in consumer_volumes)
