"""Shared pytest set-up: one fakesnow server for the whole session.

``fakesnow.server`` is a function until its first call, which imports the submodule
``fakesnow.server`` and so replaces the package attribute with that module: it can be called
once per process. Every suite that needs the server (conformance, integration) shares this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakesnow
import pytest

_start_server = fakesnow.server  # taken before any call shadows it


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[dict[str, Any]]:
    """Connection kwargs of fakesnow's server (Snowflake's SQL on DuckDB, 127.0.0.1 only) for
    the real Snowflake connector. It must start: a failure fails the tests, never skips them."""
    try:
        server = _start_server(host="127.0.0.1")
        kwargs = server.__enter__()
    except Exception as exc:
        pytest.fail(f"fakesnow's server did not start: {type(exc).__name__}: {exc}")
    try:
        assert kwargs["host"] == "127.0.0.1"
        yield dict(kwargs)
    finally:
        server.__exit__(None, None, None)
