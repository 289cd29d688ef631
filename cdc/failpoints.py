"""Fault injection for the crash tests: ``CDC_FAILPOINT=<name>`` or ``<name>:<n>`` kills the
process with SIGKILL the first (or the ``n``-th) time it reaches the point ``name``.

Points: ``before_warehouse_commit`` (a batch applied inside the warehouse transaction, not
committed), ``after_warehouse_commit`` (committed to the warehouse, not to Kafka), and the
tiering pass's ``tier:<step>`` points (see ``cdc.tiering.run``). Unset, a point costs one
environment lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import structlog

ENV = "CDC_FAILPOINT"

log = structlog.get_logger("cdc.failpoints")
_reached: Counter[str] = Counter()


def matches(spec: str, name: str, count: int) -> bool:
    """Does the setting ``spec`` name the ``count``-th arrival at ``name``?"""
    return spec == name or spec == f"{name}:{count}"


def reach(name: str, count: int | None = None) -> None:
    """Kill the process here if ``CDC_FAILPOINT`` names this point (and this arrival: the
    ``count`` given, else how many times the point was reached in this process)."""
    spec = os.environ.get(ENV, "")
    if not spec:
        return
    _reached[name] += 1
    if matches(spec, name, _reached[name] if count is None else count):
        log.warning("failpoint hit: killing the process", failpoint=spec)
        os.kill(os.getpid(), signal.SIGKILL)
