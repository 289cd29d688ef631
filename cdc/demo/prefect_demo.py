"""``cdc demo --prefect``: the demo's shop on the local stack, run by Prefect's deployments
(``prefect.yaml``) on a local Prefect server and process worker, to be looked at in the UI.

:func:`prefect_demo` brings everything up and tears it down, by pid, on the way out: the local
stack (PostgreSQL with the shop, the broker, Debezium), a Prefect server (embedded SQLite in
``<state-dir>/prefect``, a free 127.0.0.1 port), the ``cdc-process`` work pool, the project's
blocks (``prefect block register -m blocks``), every deployment of ``prefect.yaml``
(``prefect deploy --all``, with ``CDC_PROJECT_DIR`` the checkout and ``CDC_CONFIG`` the
demo's cdc.yaml) and a worker. Inside, it runs the deployments the way an operator's day
goes, each to its end: ``snapshot`` (a bulk load of every table while Debezium streams), a
short random workload, ``replicate`` (until caught up), then one warehouse row is deleted
behind the stream's back and ``reconcile`` finds and repairs it (``repair: true``), ``tier``
and ``cost-report``. The product's log lines are on each flow run's page
(:mod:`cdc.prefect_logs`). The CLI keeps it all running until Ctrl-C; the UI test uses the
same context manager.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdc.demo.prefect_server import POOL, LocalPrefect, PrefectProcessError, tail
from cdc.demo.shop import SHOP_DDL, SHOP_TABLE_CONFIG
from cdc.demo.workload import ShopWorkload
from cdc.local.pipeline import start_debezium, wait_until_published, write_stack_config
from cdc.local.stack import LocalStack

# prefect.yaml's deployments, in the order the demo runs them (flow name/deployment name)
SNAPSHOT = "cdc-snapshot/snapshot"
REPLICATE = "cdc-replicate/replicate"
RECONCILE = "cdc-reconcile/reconcile"
TIER = "cdc-tier/tier"
COST_REPORT = "cdc-cost-report/cost-report"
DEPLOYMENTS = (SNAPSHOT, REPLICATE, RECONCILE, TIER, COST_REPORT)
RUN_TIMEOUT = 600.0  # seconds one flow run may take
# The bulk snapshot's tables. order_items is left out: flows/snapshot.py names its progress
# artifact cdc-snapshot-<table>, and Prefect refuses a key with "_" (only a-z, 0-9 and "-")
SNAPSHOT_TABLES = ["public.customers", "public.products", "public.orders", "public.order_items"]


class PrefectDemoError(RuntimeError):
    """The demo can't run here (no checkout with prefect.yaml...)."""


@dataclass(frozen=True)
class DeploymentRun:
    """One flow run of a deployment, as it ended (or as it was when the wait timed out)."""

    deployment: str
    flow_run_id: str
    flow_run_name: str
    state: str  # Prefect's state name: Completed, Failed, Crashed...
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "Completed"


@dataclass
class PrefectDemo:
    """What :func:`prefect_demo` brought up and ran."""

    prefect: LocalPrefect
    stack: LocalStack
    config: Path
    warehouse: Path
    runs: list[DeploymentRun] = field(default_factory=list)
    damaged_order: int | None = None  # the order deleted from the warehouse before reconcile

    @property
    def ui_url(self) -> str:
        return self.prefect.ui_url

    @property
    def ok(self) -> bool:
        return len(self.runs) == len(DEPLOYMENTS) and all(r.ok for r in self.runs)

    def run_url(self, run: DeploymentRun) -> str:
        return f"{self.ui_url}/runs/flow-run/{run.flow_run_id}"

    def run_of(self, deployment: str) -> DeploymentRun:
        (run,) = [r for r in self.runs if r.deployment == deployment]
        return run

    def to_json(self) -> dict[str, Any]:
        runs = [
            {"deployment": r.deployment, "state": r.state, "flow_run": r.flow_run_id,
             "name": r.flow_run_name, "seconds": round(r.seconds, 1), "url": self.run_url(r)}
            for r in self.runs
        ]  # fmt: skip
        return {
            "ok": self.ok,
            "ui": self.ui_url,
            "api": self.prefect.api_url,
            "config": str(self.config),
            "warehouse": str(self.warehouse),
            "damaged_order": self.damaged_order,
            "runs": runs,
        }


def project_dir() -> Path:
    """The checkout whose ``prefect.yaml`` and ``flows/`` the worker runs."""
    folder = Path(__file__).resolve().parents[2]  # cdc/demo/prefect_demo.py
    if not (folder / "prefect.yaml").is_file():
        raise PrefectDemoError(
            f"no prefect.yaml next to the cdc package ({folder}): `cdc demo --prefect` runs "
            "the deployments of a checkout of the project; install it with `pip install -e .`"
        )
    return folder


@contextmanager
def prefect_demo(
    *,
    state_dir: Path,
    warehouse: Path,
    console: Console,
    seconds: float = 5,
    rate: float | None = 50,
    seed: int = 7,
    pg_port: int | None = None,
    kafka_port: int | None = None,
) -> Iterator[PrefectDemo]:
    """Bring the stack and Prefect up, run the five deployments (see the module docstring),
    yield; stop everything that was started on the way out, by pid. The stack's ports
    default to the usual ones when free (as ``cdc demo``)."""
    state_dir = state_dir.resolve()
    say = console.print
    config_path = state_dir / "cdc.yaml"
    home = state_dir / "prefect"
    shutil.rmtree(home, ignore_errors=True)  # a fresh server database for every demo
    prefect = LocalPrefect(home, project_dir(), env={"CDC_CONFIG": str(config_path)})
    stack = LocalStack(state_dir, pg_port=pg_port, kafka_port=kafka_port, database="shop")
    demo = PrefectDemo(prefect, stack, config_path, warehouse.resolve())
    try:
        say(f"[bold]Starting the Prefect server[/] on {prefect.ui_url} (PREFECT_HOME {home})")
        prefect.start_server()  # it takes a while: the stack starts meanwhile
        say(f"[bold]Starting the local stack[/] in {stack.state_dir}")
        stack.up()
        workload, slot = _shop(demo, seed)
        say(f"  PostgreSQL  {stack.pg_url()}\n  Kafka       {stack.bootstrap_servers}")
        say(f"  cdc.yaml    {config_path}\n  warehouse   {demo.warehouse}")
        prefect.wait_healthy()
        _deploy(prefect, console)
        runner = _Runner(demo, console)
        runner.run(SNAPSHOT, {"tables": SNAPSHOT_TABLES})
        say(f"Workload: {seconds:g} s of random shop transactions")
        stats = workload.run(seconds=seconds, rate=rate)
        say(f"  {stats.changes} row changes in {stats.transactions} transactions")
        wait_until_published(stack.pg_url(), slot)
        runner.run(REPLICATE)
        demo.damaged_order = damage_warehouse(demo.warehouse)
        say(f"Damage behind the stream's back: order {demo.damaged_order} deleted from the "
            "warehouse's orders table")  # fmt: skip
        runner.run(RECONCILE, {"repair": True})
        runner.run(TIER)
        runner.run(COST_REPORT)
        yield demo
    finally:
        stopped = prefect.stop()
        debezium = stack.state.processes.get("debezium")
        if debezium is not None:
            # SIGTERM: its offsets are stored within a second, but its JVM can take 30 s more
            # to exit (the stack's own stop waits that long): the demo's data is thrown away
            debezium.stop(timeout=10)
        stopped += stack.down()
        say(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _shop(demo: PrefectDemo, seed: int) -> tuple[ShopWorkload, str]:
    """The shop's tables and first rows, a fresh warehouse, cdc.yaml and Debezium streaming
    (its initial snapshot published); the workload to run later, and the slot's name."""
    stack = demo.stack
    url = stack.pg_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SHOP_DDL)
    workload = ShopWorkload(url, seed=seed, violations=False)
    workload.seed()
    demo.warehouse.unlink(missing_ok=True)
    demo.warehouse.with_name(demo.warehouse.name + ".wal").unlink(missing_ok=True)
    # tier files, snapshot plans and cost reports of an earlier demo belong to no table now
    shutil.rmtree(stack.state_dir / ".cdc", ignore_errors=True)
    config = write_stack_config(
        demo.config,
        stack,
        [dict(t) for t in SHOP_TABLE_CONFIG],
        warehouse={"type": "duckdb", "path": str(demo.warehouse)},
    )
    start_debezium(stack, config)
    wait_until_published(url, config.source.slot_name)
    return workload, config.source.slot_name


def _deploy(prefect: LocalPrefect, console: Console) -> None:
    console.print(f"[bold]Deploying prefect.yaml[/] from {prefect.project_dir}")
    prefect.cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect.cli("block", "register", "-m", "blocks")
    out = prefect.cli("--no-prompt", "deploy", "--all")
    missing = [d for d in DEPLOYMENTS if d not in out]
    if missing:
        raise PrefectProcessError(f"`prefect deploy --all` did not deploy {missing}:\n{out}")
    console.print(f"  deployments: {', '.join(DEPLOYMENTS)}; worker on pool {POOL}")
    prefect.start_worker()


class _Runner:
    """Runs one deployment at a time and waits for its flow run's end."""

    def __init__(self, demo: PrefectDemo, console: Console) -> None:
        self.demo, self.console = demo, console

    def run(self, deployment: str, parameters: dict[str, Any] | None = None) -> DeploymentRun:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        prefect = self.demo.prefect
        shown = f" {parameters}" if parameters else ""
        self.console.print(f"[bold]Running[/] {deployment}{shown}")
        started = time.monotonic()
        with (
            temporary_settings({PREFECT_API_URL: prefect.api_url}),
            get_client(sync_client=True) as client,
        ):
            flow_run = client.create_flow_run_from_deployment(
                client.read_deployment_by_name(deployment).id, parameters=parameters or {}
            )
            while True:
                flow_run = client.read_flow_run(flow_run.id)
                if flow_run.state is not None and flow_run.state.is_final():
                    break
                if "worker" not in prefect.alive():
                    raise PrefectProcessError(
                        f"the Prefect worker exited:\n{tail(prefect.log('worker'))}"
                    )
                if time.monotonic() - started > RUN_TIMEOUT:
                    break  # reported with the state it is in
                time.sleep(0.5)
        run = DeploymentRun(
            deployment=deployment,
            flow_run_id=str(flow_run.id),
            flow_run_name=flow_run.name,
            state=(flow_run.state.name or flow_run.state.type.value) if flow_run.state else "?",
            seconds=time.monotonic() - started,
            parameters=dict(parameters or {}),
        )
        self.demo.runs.append(run)
        colour = "green" if run.ok else "red"
        self.console.print(
            f"  [{colour}]{run.state}[/] in {run.seconds:.1f} s: {self.demo.run_url(run)}"
        )
        return run


def damage_warehouse(path: Path, timeout: float = 30) -> int:
    """Delete the first order from the warehouse (not from the source), for reconcile to find
    and repair; returns its id."""
    import duckdb

    deadline = time.monotonic() + timeout
    while True:
        try:
            con = duckdb.connect(str(path))
            break
        except duckdb.IOException:  # a flow run's process may still be letting go of it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        row = con.execute("SELECT min(id) FROM main.orders").fetchone()
        if row is None or row[0] is None:
            raise PrefectDemoError(f"the warehouse {path} has no orders to damage")
        con.execute("DELETE FROM main.orders WHERE id = ?", [row[0]])
    finally:
        con.close()
    return int(row[0])


def print_runs(demo: PrefectDemo, console: Console) -> None:
    table = Table(title="Prefect deployments run by the demo")
    for column in ("deployment", "state", "seconds", "flow run"):
        table.add_column(column)
    for run in demo.runs:
        colour = "green" if run.ok else "red"
        table.add_row(run.deployment, f"[{colour}]{run.state}[/]", f"{run.seconds:.1f}",
                      demo.run_url(run))  # fmt: skip
    console.print(table)
    console.print(
        f"[bold]Prefect UI:[/] {demo.ui_url}  (deployments: {demo.ui_url}/deployments; each "
        "flow run's page shows the product's log lines, its Artifacts tab the reports)"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def signals_stop() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the demo the same way: every ``finally`` runs, so everything is
    stopped (SIGINT is set explicitly: a shell starts background jobs with it ignored)."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_interrupted(demo: PrefectDemo, console: Console) -> None:
    """Block until Ctrl-C (or SIGTERM), or until the server or the worker exits."""
    console.print("Everything keeps running until Ctrl-C.")
    try:
        while {"server", "worker"} <= set(demo.prefect.alive()):
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")
        return
    gone = {"server", "worker"} - set(demo.prefect.alive())
    console.print(f"[red]the Prefect {' and '.join(sorted(gone))} exited[/]; stopping")


def run_from_cli(
    *,
    state_dir: Path,
    warehouse: str,
    seconds: float,
    rate: float,
    seed: int,
    console: Console,
    as_json: bool,
) -> int:
    """``cdc demo --prefect``: bring it all up, print the runs and the UI's URL, keep it
    running until Ctrl-C, stop it all. Exit code 1 when a flow run did not complete."""
    import json

    from cdc.demo.runner import SNOWFLAKE_LOCAL

    if warehouse == SNOWFLAKE_LOCAL:
        console.print("[red]--prefect runs on DuckDB[/]: give --warehouse a DuckDB file")
        return 2
    ok = False
    try:
        with signals_stop(), prefect_demo(
            state_dir=state_dir, warehouse=Path(warehouse), console=console,
            seconds=seconds, rate=rate or None, seed=seed,
        ) as demo:  # fmt: skip
            print_runs(demo, console)
            if as_json:
                print(json.dumps(demo.to_json()), flush=True)
            ok = demo.ok
            wait_until_interrupted(demo, console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except (PrefectDemoError, PrefectProcessError) as exc:
        console.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        return 1
    return 0 if ok else 1
