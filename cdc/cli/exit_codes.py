"""The ``cdc`` commands' exit codes: the one place they are defined.

Every expected failure ends a command with one message (what happened, what to do) on stderr
and one of these codes, never a traceback. Code 1 keeps its per-command meaning ("differences
remain", "the key has no versions"...) and is also what an unexpected error (a bug: its
traceback is printed) exits with.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: the command's own "not everything is fine" answer (reconcile: differences remain;
    #: demo: a table differs; history: no versions...), or an unexpected error (traceback)
    NOT_OK = 1
    #: configuration missing or invalid, bad arguments (also Typer's usage errors)
    CONFIG = 2
    #: the warehouse can't be used: read-only, full, held by another process, refused a batch
    WAREHOUSE = 3
    #: the source PostgreSQL can't be reached or refused the connection
    SOURCE_UNREACHABLE = 4
    #: no Kafka broker answered
    BROKER_UNREACHABLE = 5
    #: Prefect: no API URL configured, the server doesn't answer, or the deployment is missing
    PREFECT = 6
    #: the triggered flow run ended Failed, Crashed or Cancelled
    FLOW_RUN_FAILED = 7
    #: the triggered flow run did not end within --timeout (it may still be running)
    FLOW_RUN_TIMEOUT = 8


# One line per code, for `--help` texts and the manual (README "Exit codes").
MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "done; everything is as asked",
    ExitCode.NOT_OK: "the command's negative answer (e.g. reconcile: differences remain), "
    "or an unexpected error (its traceback is printed: please report it)",
    ExitCode.CONFIG: "configuration missing or invalid, or bad arguments",
    ExitCode.WAREHOUSE: "the warehouse can't be used (read-only, full, held by another "
    "process, or it refused the batch)",
    ExitCode.SOURCE_UNREACHABLE: "the source PostgreSQL can't be reached or refused the connection",
    ExitCode.BROKER_UNREACHABLE: "no Kafka broker answered",
    ExitCode.PREFECT: "Prefect: no PREFECT_API_URL, the server doesn't answer, or the "
    "deployment doesn't exist",
    ExitCode.FLOW_RUN_FAILED: "the flow run ended Failed, Crashed or Cancelled",
    ExitCode.FLOW_RUN_TIMEOUT: "the flow run did not end within --timeout",
}
