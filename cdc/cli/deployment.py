"""Triggering a Prefect deployment from the CLI and waiting for its flow run's end.

Refuses without a configured Prefect API (``PREFECT_API_URL``, or the active profile's): the
Prefect client would otherwise start a temporary local server that knows no deployment.
Checks the server answers and the deployment exists before triggering; the outcome
(:class:`RunOutcome`) carries the run's state, its UI link and the exit code it stands for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cdc.cli.exit_codes import ExitCode
from cdc.cli.failures import PrefectUnavailableError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

FAILED_STATES = frozenset({"FAILED", "CRASHED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class RunOutcome:
    deployment: str
    flow_run: str  # its id (the key older scripts read)
    flow_run_name: str | None
    state: str | None  # the state's name: Completed, Failed, Late...
    state_type: str | None  # COMPLETED, FAILED, RUNNING...
    state_message: str | None
    url: str | None  # the flow run in the Prefect UI
    timeout_minutes: float
    work_pool: str | None = None

    @property
    def code(self) -> ExitCode:
        if self.state_type == "COMPLETED":
            return ExitCode.OK
        if self.state_type in FAILED_STATES:
            return ExitCode.FLOW_RUN_FAILED
        return ExitCode.FLOW_RUN_TIMEOUT  # not final yet: still scheduled, pending or running

    def summary(self) -> str:
        """One line: the run, its state and where to look."""
        run = f"flow run {self.flow_run_name or self.flow_run} of {self.deployment}"
        link = f" See {self.url}" if self.url else ""
        if self.code is ExitCode.OK:
            return f"{run}: {self.state}.{link}"
        if self.code is ExitCode.FLOW_RUN_FAILED:
            why = f" ({self.state_message})" if self.state_message else ""
            return f"{run} ended {self.state}{why}: read its logs.{link}"
        worker = "prefect worker start" + (f" --pool {self.work_pool}" if self.work_pool else "")
        return (
            f"{run} is still {self.state or 'in no state'} after {self.timeout_minutes:g} min: "
            f"check that a worker runs (`{worker}`). The run may still end: wait longer with "
            f"--timeout, or follow it in the UI.{link}"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": int(self.code)}


def api_url() -> str:
    """The configured Prefect API URL; refuses (never a temporary server) when there is none."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise PrefectUnavailableError(
            "no Prefect server configured: set PREFECT_API_URL to its API (e.g. "
            "http://127.0.0.1:4200/api; `prefect config set PREFECT_API_URL=...` keeps it), "
            "or run the command without --deployment to do the work in this process."
        )
    return str(url)


def run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the UI: PREFECT_UI_URL, else derived from the API URL."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def outcome_of(
    deployment: str, run: FlowRun, timeout_minutes: float, pool: str | None
) -> RunOutcome:
    state = run.state
    return RunOutcome(
        deployment=deployment,
        flow_run=str(run.id),
        flow_run_name=run.name,
        state=state.name if state else None,
        state_type=state.type.value if state else None,
        state_message=state.message if state else None,
        url=run_url(str(run.id)),
        timeout_minutes=timeout_minutes,
        work_pool=pool,
    )


def trigger(
    name: str, parameters: dict[str, Any], idempotency_key: str, timeout_minutes: float
) -> RunOutcome:
    """Run deployment ``name`` (``FLOW/DEPLOYMENT``) and wait up to ``timeout_minutes``."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    url = api_url()
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
        if problem is not None:
            raise PrefectUnavailableError(
                f"the Prefect server at {url} does not answer ({type(problem).__name__}: "
                f"{problem}): start it (`prefect server start`) or fix PREFECT_API_URL."
            )
        try:
            found = client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise PrefectUnavailableError(
                f"deployment {name!r} does not exist on the Prefect server at {url}: create it "
                "(`prefect --no-prompt deploy --all` in the project folder, see prefect.yaml), "
                "or list the existing ones with `prefect deployment ls`."
            ) from None
    try:
        run = run_deployment(found.id, parameters=parameters, idempotency_key=idempotency_key,
                             timeout=timeout_minutes * 60, as_subflow=False)  # fmt: skip
    except httpx.HTTPError as exc:
        raise PrefectUnavailableError(
            f"the Prefect server at {url} failed while the run was triggered or watched "
            f"({type(exc).__name__}: {exc}): check the server, then look for the run in the UI."
        ) from None
    assert isinstance(run, FlowRun)  # called outside an event loop: the run itself
    return outcome_of(name, run, timeout_minutes, found.work_pool_name)
