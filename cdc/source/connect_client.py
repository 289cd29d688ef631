"""A small client for the Kafka Connect REST API (register, inspect, remove a connector).

Connection errors and ``409 Conflict`` (Connect answers 409 while its workers rebalance) are
retried a few times with a short backoff; every other failure raises :class:`ConnectError`
carrying the HTTP status and Connect's own ``message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

__all__ = ["ConnectClient", "ConnectError"]


class ConnectError(Exception):
    """A Kafka Connect request failed; ``status`` is None when the server was unreachable."""

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class _RetryableError(Exception):
    """Internal: an attempt that may succeed if repeated (409 rebalance, connection error)."""

    def __init__(self, response: httpx.Response | None, error: httpx.TransportError | None):
        super().__init__("retryable")
        self.response = response
        self.error = error


class ConnectClient:
    """Kafka Connect REST client at ``url`` (e.g. ``http://127.0.0.1:8083``)."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        attempts: int = 3,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._attempts = attempts
        self._backoff = backoff
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # -- API ------------------------------------------------------------------------------

    def put_connector_config(self, name: str, props: Mapping[str, str]) -> dict[str, Any]:
        """Create or update connector ``name`` (``PUT /connectors/{name}/config``).

        Returns Connect's answer (``name``, ``config``, ``tasks``, ``type``); the ``config`` in
        it holds secrets in plain text, so redact it before printing.
        """
        response = self._request("PUT", f"/connectors/{_segment(name)}/config", json=dict(props))
        return _json_object(response)

    def status(self, name: str) -> dict[str, Any]:
        """State of the connector and its tasks (``GET /connectors/{name}/status``)."""
        return _json_object(self._request("GET", f"/connectors/{_segment(name)}/status"))

    def delete(self, name: str) -> None:
        """Remove the connector (``DELETE /connectors/{name}``); its offsets stay in Kafka."""
        self._request("DELETE", f"/connectors/{_segment(name)}")

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=2.0),
            retry=retry_if_exception(lambda exc: isinstance(exc, _RetryableError)),
            reraise=False,
        )
        try:
            response: httpx.Response = retrying(self._attempt, method, path, json)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            if not isinstance(
                last, _RetryableError
            ):  # pragma: no cover - only _RetryableError retries
                raise
            if last.response is not None:
                raise self._http_error(method, path, last.response) from None
            raise ConnectError(
                f"could not reach Kafka Connect at {self.url}: {last.error}; is it running? "
                "(docker compose up connect)"
            ) from last.error
        if response.status_code >= 400:
            raise self._http_error(method, path, response)
        return response

    def _attempt(self, method: str, path: str, json: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise _RetryableError(None, exc) from exc
        if response.status_code == 409:
            raise _RetryableError(response, None)
        return response

    def _http_error(self, method: str, path: str, response: httpx.Response) -> ConnectError:
        detail = _connect_message(response)
        return ConnectError(
            f"Kafka Connect {method} {path} failed: HTTP {response.status_code}: {detail}",
            status=response.status_code,
            detail=detail,
        )


def _segment(name: str) -> str:
    return quote(name, safe="")


def _connect_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text.strip() or response.reason_phrase


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 204 or not response.content:
        return {}
    body = response.json()
    if not isinstance(body, dict):
        raise ConnectError(f"unexpected answer from Kafka Connect: {response.text[:200]}")
    return body
