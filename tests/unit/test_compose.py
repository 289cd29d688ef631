"""docker-compose.yml (the production-like stack) and its cdc config, checked statically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "postgres",
    "kafka",
    "connect",
    "kafka-ui",
    "consumer",
    "register-connector",
    "prefect-server",
    "prefect-deploy",
    "prefect-worker",
}
PREFECT = ("prefect-server", "prefect-deploy", "prefect-worker")


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
    for name in ("postgres", "kafka", "connect", "prefect-server"):
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


# ---- Prefect: a server, a one-shot deploy and a process worker, from the project image ---------


def mounts_of(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a host path or a named volume) of a service's volumes."""
    found: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        found[target] = source
    return found


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each service depended on -> its condition (short syntax: service_started)."""
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def prefect_yaml() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert isinstance(data, dict)
    return data


def server_api(services: dict[str, dict[str, Any]]) -> str:
    """The API URL other containers reach the server at: its service name and --port."""
    command = command_of(services["prefect-server"])
    return f"http://prefect-server:{command[command.index('--port') + 1]}/api"


def test_prefect_services_run_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    for name in PREFECT:
        assert services[name]["image"] == services["consumer"]["image"], name
        assert services[name]["build"] == services["consumer"]["build"], name


def test_prefect_server_keeps_its_database_in_a_volume_and_its_ui_on_loopback(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    server = services["prefect-server"]
    command = command_of(server)
    assert command[:3] == ["prefect", "server", "start"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # other containers reach it
    port = command[command.index("--port") + 1]
    assert server["ports"] == [f"127.0.0.1:{port}:{port}"]  # the host: loopback only
    env = server["environment"]
    # the browser on the host calls the API through the published port
    assert env["PREFECT_UI_API_URL"] == f"http://127.0.0.1:{port}/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    # the SQLite database, PREFECT_HOME and the UI files are on a named volume
    (mount,) = [target for target, source in mounts_of(server).items() if source == "prefect-data"]
    assert "prefect-data" in compose["volumes"]
    for key in ("PREFECT_HOME", "PREFECT_UI_STATIC_DIRECTORY"):
        assert env[key].startswith(mount + "/"), key
    database = env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert database.startswith("sqlite+aiosqlite:///")
    assert database.removeprefix("sqlite+aiosqlite:///").startswith(mount + "/")
    assert f"127.0.0.1:{port}/api/health" in " ".join(server["healthcheck"]["test"])
    assert server["restart"] == "unless-stopped"


def test_prefect_deploy_creates_the_pool_registers_the_blocks_and_deploys_once(
    services: dict[str, dict[str, Any]],
) -> None:
    deploy = services["prefect-deploy"]
    command = command_of(deploy)
    assert command[:2] == ["sh", "-c"]
    script = " ".join(command[2:])
    steps = [
        "prefect work-pool create cdc-process --type process --overwrite",  # rerunnable
        "prefect block register -m blocks",
        "deploy --all",
    ]
    positions = [script.find(step) for step in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), script
    assert script.count("&&") == 2  # a failed step fails the service (and the worker waits)
    assert "--no-prompt" in script
    assert deploy["restart"] == "no"
    assert depends_on(deploy) == {"prefect-server": "service_healthy"}
    assert deploy["environment"]["PREFECT_API_URL"] == server_api(services)


def test_the_flows_read_the_consumers_config(services: dict[str, dict[str, Any]]) -> None:
    deploy, worker = services["prefect-deploy"], services["prefect-worker"]
    consumer = command_of(services["consumer"])
    consumer_config = consumer[consumer.index("--config") + 1]
    # `prefect deploy` stores CDC_CONFIG in the deployments' `config` parameter (the worker's
    # environment is never read for it): it must be set for the deploy service, and name the path
    # the worker (which runs the flows) mounts the config at, which is the consumer's path and file
    config = deploy["environment"]["CDC_CONFIG"]
    assert config == consumer_config
    source = "./deploy/cdc.compose.yaml"
    assert mounts_of(worker)[config] == source == mounts_of(services["consumer"])[config]
    parameters = [d["parameters"]["config"] for d in prefect_yaml()["deployments"]]
    assert set(parameters) == {"{{ $CDC_CONFIG }}"}
    # the folder the pull step runs the flows from, stored at deploy time too: the image's /app,
    # where prefect.yaml is (the deploy's working directory) and where the worker starts
    pull = prefect_yaml()["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert pull["directory"] == "{{ $CDC_PROJECT_DIR }}"
    assert "COPY . /app" in (ROOT / "Dockerfile").read_text()
    assert deploy["environment"]["CDC_PROJECT_DIR"] == "/app"
    assert deploy["working_dir"] == "/app" == worker["working_dir"]


def test_the_flows_write_to_the_warehouse_volume(services: dict[str, dict[str, Any]]) -> None:
    worker = services["prefect-worker"]
    assert mounts_of(worker)["/data"] == "warehouse-data"
    assert mounts_of(services["consumer"])["/data"] == "warehouse-data"
    config = load_config(ROOT / "deploy" / "cdc.compose.yaml", env={"PGPASSWORD": "x"})
    # /config is a read-only mount: the warehouse, the tier files and the reports are on /data
    assert all(str(v).endswith(":ro") for v in worker["volumes"] if ":/config/" in str(v))
    written = (config.warehouse.path, config.tiering.target, config.costs.output,
               config.state_path("snapshots"))  # fmt: skip
    for path in map(str, written):
        assert path.startswith("/data/"), path
    assert worker["environment"]["PGPASSWORD"] == services["consumer"]["environment"]["PGPASSWORD"]


def test_prefect_worker_serves_the_pool_of_every_deployment(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["prefect-worker"]
    command = command_of(worker)
    assert command[:3] == ["prefect", "worker", "start"]
    pool = command[command.index("--pool") + 1]
    assert {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]} == {pool}
    assert command[command.index("--type") + 1] == "process"
    assert worker["environment"]["PREFECT_API_URL"] == server_api(services)
    assert worker["restart"] == "unless-stopped"
    # started once the deployments exist and the connector is registered
    assert depends_on(worker) == {
        "prefect-deploy": "service_completed_successfully",
        "register-connector": "service_completed_successfully",
    }


def test_depends_on_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in order:
            return
        for target in depends_on(services[name]):
            visit(target, (*path, name))
        order.append(name)

    for name in services:
        visit(name, ())
    assert order.index("prefect-server") < order.index("prefect-deploy")
    assert order.index("prefect-deploy") < order.index("prefect-worker")
