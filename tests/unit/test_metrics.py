"""cdc.metrics: the series the replicator updates, /health's states, and the HTTP server
(a real one on a free loopback port)."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc.config import ConfigError, parse_config
from cdc.metrics import Metrics, MetricsServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_batches_count_events_per_table_and_observe_the_apply_time() -> None:
    m = Metrics()
    m.tables(["a", "b"])
    m.batch_applied(0.2, {"a": 3, "b": 1}, {})
    m.batch_applied(0.05, {"a": 2}, {})
    got = samples(m)
    assert got[("cdc_events_applied_total", (("table", "a"),))] == 5
    assert got[("cdc_events_applied_total", (("table", "b"),))] == 1
    assert got[("cdc_batches_total", ())] == 2
    assert got[("cdc_batch_apply_seconds_count", ())] == 2
    assert got[("cdc_batch_apply_seconds_sum", ())] == pytest.approx(0.25)
    assert got[("cdc_batch_apply_seconds_bucket", (("le", "0.1"),))] == 1


def test_series_exist_at_zero_before_the_first_batch() -> None:
    m = Metrics()
    m.tables(["a"])
    got = samples(m)
    assert got[("cdc_events_applied_total", (("table", "a"),))] == 0
    assert got[("cdc_table_parked", (("table", "a"),))] == 0
    assert got[("cdc_lag_seconds", (("table", "a"),))] == 0
    assert got[("cdc_dead_letters_total", ())] == 0
    assert got[("cdc_warehouse_retries_total", ())] == 0


def test_lag_seconds_is_the_age_of_the_newest_applied_change_while_events_are_pending() -> None:
    clock = Clock()
    m = Metrics(clock=clock)
    m.tables(["a"])
    m.batch_applied(0.1, {"a": 1}, {"a": clock.now - 30})
    m.pending({"a": 7})
    assert samples(m)[("cdc_lag_events", (("table", "a"),))] == 7
    assert samples(m)[("cdc_lag_seconds", (("table", "a"),))] == 30
    clock.now += 10  # it grows between batches, at scrape time
    assert samples(m)[("cdc_lag_seconds", (("table", "a"),))] == 40
    m.batch_applied(0.1, {"a": 1}, {"a": clock.now - 70})  # older than what was applied
    assert samples(m)[("cdc_lag_seconds", (("table", "a"),))] == 40
    m.pending({"a": 0})  # caught up: 0, however old the last change is
    assert samples(m)[("cdc_lag_seconds", (("table", "a"),))] == 0


def test_dead_letters_retries_parked_and_slot() -> None:
    m = Metrics()
    m.tables(["a"])
    m.dead_lettered()
    m.dead_lettered()
    m.retried()
    m.table_parked("a")
    m.slot("cdc_slot", active=True, lag=123, retained=4567)
    got = samples(m)
    assert got[("cdc_dead_letters_total", ())] == 2
    assert got[("cdc_warehouse_retries_total", ())] == 1
    assert got[("cdc_table_parked", (("table", "a"),))] == 1
    assert got[("cdc_slot_lag_bytes", (("slot", "cdc_slot"),))] == 123
    assert got[("cdc_slot_retained_wal_bytes", (("slot", "cdc_slot"),))] == 4567
    assert got[("cdc_slot_active", (("slot", "cdc_slot"),))] == 1


def test_two_instances_have_their_own_registries() -> None:
    one, two = Metrics(), Metrics()
    one.dead_lettered()
    assert samples(two)[("cdc_dead_letters_total", ())] == 0


def test_health_states() -> None:
    mono = Clock()
    m = Metrics(stall_seconds=60, monotonic=mono)
    assert m.health() == (503, {"status": "starting", "seconds_since_poll": None,
                                "pending_events": 0})  # fmt: skip
    m.alive()
    m.pending({"a": 4})
    code, body = m.health()
    assert (code, body["status"], body["pending_events"]) == (200, "ok", 4)
    mono.now += 61  # no poll, batch or retry for longer than stall_seconds
    assert m.health()[0] == 503 and m.health()[1]["status"] == "stalled"
    m.retried()  # a retrying loop is alive
    assert m.health()[0] == 200
    m.stopping()
    assert m.health() == (503, {"status": "stopping", "seconds_since_poll": 0.0,
                                "pending_events": 4})  # fmt: skip


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    s = MetricsServer(Metrics(), "127.0.0.1", 0).start()
    yield s
    s.close()


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_serves_metrics_and_health_on_the_bound_port(server: MetricsServer) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    server.metrics.tables(["a"])
    server.metrics.batch_applied(0.1, {"a": 2}, {})
    code, kind, text = _get(f"{server.url}/metrics")
    assert code == 200 and kind.startswith("text/plain")
    assert 'cdc_events_applied_total{table="a"} 2.0' in text
    code, kind, text = _get(f"{server.url}/health")
    assert (code, kind, json.loads(text)["status"]) == (503, "application/json", "starting")
    server.metrics.alive()
    assert _get(f"{server.url}/health")[0] == 200
    assert _get(f"{server.url}/nope")[0] == 404


def test_an_ipv6_loopback_host_is_served() -> None:
    try:
        server = MetricsServer(Metrics(), "::1", 0).start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url == f"http://[::1]:{server.port}"
        assert _get(f"{server.url}/metrics")[0] == 200
    finally:
        server.close()


def test_a_taken_port_is_an_os_error(server: MetricsServer) -> None:
    with pytest.raises(OSError):
        MetricsServer(Metrics(), "127.0.0.1", server.port)


CONFIG = """\
source: {host: 127.0.0.1, database: shop, user: cdc}
kafka: {bootstrap_servers: 127.0.0.1:9092}
warehouse: {type: duckdb}
tables: [{name: public.a}]
"""


def test_metrics_config_defaults_and_errors() -> None:
    config = parse_config(CONFIG, file="cdc.yaml")
    assert (config.metrics.port, config.metrics.host) == (None, "127.0.0.1")
    assert config.metrics.slot_poll_seconds == 15 and config.metrics.stall_seconds == 300
    assert parse_config(CONFIG + "metrics: {port: 9108}\n", file="cdc.yaml").metrics.port == 9108
    bad = CONFIG + textwrap.dedent("""\
        metrics:
          port: 70000
          slot_poll_seconds: 0
          colour: red
        """)
    with pytest.raises(ConfigError) as info:
        parse_config(bad, file="cdc.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == (
        "cdc.yaml:6: metrics.port: Input should be less than or equal to 65535 (got 70000)"
    )
    assert lines[1].startswith("cdc.yaml:7: metrics.slot_poll_seconds: Input should be greater")
    assert lines[2].startswith("cdc.yaml:8: metrics.colour: ")
