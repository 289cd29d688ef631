"""`cdc demo --prefect` seen in Prefect's UI through a real browser: Debian's chromium, headless,
driven by Playwright (no browser download). The demo's context manager brings up the stack, a
Prefect server, the deployments and a worker and runs the five deployments; the browser then
checks the deployments and their schedules, the reconcile run's page with the product's own
log lines (the structlog bridge, cdc.prefect_logs), and the reconcile and cost artifacts.
Screenshots are kept in tests/output/prefect-ui/. Everything started is stopped by pid."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from rich.console import Console

from cdc.demo.prefect_demo import (
    COST_REPORT,
    DEPLOYMENTS,
    RECONCILE,
    PrefectDemo,
    prefect_demo,
)
from cdc.demo.prefect_server import tail
from cdc.local.processes import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "output" / "prefect-ui"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
UI_TIMEOUT_MS = 60_000  # CI's 2 cores are busy with the rest of the suite
VIEWPORT = {"width": 1920, "height": 1000}  # narrower, the deployments list folds schedules
# prefect.yaml's schedules, as the deployments list words them (snapshot has none)
SCHEDULES = {
    "cost-report": "At 06:00 AM, only on Monday",
    "reconcile": "Every hour every day",
    "replicate": "Every 5 minutes every day",
    "tier": "At 02:30 AM every day",
}


def chromium() -> str:
    """Debian's chromium; missing, the test fails (a real-chain test never skips)."""
    path = shutil.which("chromium")
    if path is None:
        where = "CI=true: `make test` installs it with apt-get (`make browser`)" if os.environ.get(
            "CI"
        ) == "true" else "run `make browser`"  # fmt: skip
        pytest.fail(
            "Debian's chromium is missing: install it with `apt-get install -y chromium` "
            f"({where}); the Prefect UI test drives it headless through Playwright"
        )
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectDemo]:
    chromium()  # before minutes of set-up
    state = tmp_path_factory.mktemp("prefect-demo")
    started = time.monotonic()
    with prefect_demo(state_dir=state, warehouse=state / "warehouse.duckdb",
                      console=Console(stderr=True), seconds=3, rate=50,
                      pg_port=free_port(), kafka_port=free_port()) as running:  # fmt: skip
        print(f"the Prefect demo was up and its five runs done in "
              f"{time.monotonic() - started:.0f} s")  # fmt: skip
        assert running.ok, (running.to_json(), tail(running.prefect.log("worker"), 6000))
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless chromium with a fresh user-data dir (a persistent context: Playwright takes
    the profile folder this way only)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium(), args=CHROMIUM_ARGS, headless=True,
            viewport=VIEWPORT,
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    tab = browser.new_page()
    tab.set_default_timeout(UI_TIMEOUT_MS)
    yield tab
    tab.close()


def shot(page: Page, name: str, *, full_page: bool = True) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


def test_the_deployments_page_lists_the_five_deployments_with_their_schedules(
    demo: PrefectDemo, page: Page
) -> None:
    page.goto(f"{demo.ui_url}/deployments")
    expect(page.get_by_text(f"{len(DEPLOYMENTS)} Deployments")).to_be_visible()
    for deployment in DEPLOYMENTS:
        flow, name = deployment.split("/")
        row = page.locator("tr", has=page.get_by_text(name, exact=True))
        expect(row).to_have_count(1)
        expect(row).to_contain_text(flow)
        expect(row).to_contain_text("Ready")  # its work pool has a worker polling
        if name in SCHEDULES:
            expect(row).to_contain_text(SCHEDULES[name])
    shot(page, "deployments")


def test_the_reconcile_run_page_shows_the_products_log_lines(demo: PrefectDemo, page: Page) -> None:
    run = demo.run_of(RECONCILE)
    assert run.ok and run.parameters == {"repair": True}
    page.goto(demo.run_url(run))
    expect(page.get_by_text(run.flow_run_name).first).to_be_visible()
    expect(page.get_by_text("Completed").first).to_be_visible()
    # the product's structlog events, with their context, among Prefect's own lines
    expect(page.get_by_text("compared table=customers rounds=").first).to_be_visible()
    expect(page.get_by_text("compared table=orders rounds=").first).to_contain_text("differing=1")
    expect(page.get_by_text("re-checked table=orders keys=1").first).to_contain_text("confirmed=1")
    repaired = f"orders: repaired (missing {demo.damaged_order})"  # the flow's own line
    expect(page.get_by_text(repaired).first).to_be_visible()
    page.get_by_text("compared table=customers").first.scroll_into_view_if_needed()
    shot(page, "reconcile-run-logs", full_page=False)  # the log list scrolls inside the page


def test_the_reconcile_and_cost_artifacts_are_shown(demo: PrefectDemo, page: Page) -> None:
    page.goto(f"{demo.ui_url}/artifacts")
    for key in ("cdc-reconcile-report", "cdc-reconcile", "cdc-cost-report",
                "cdc-cost-report-tables"):  # fmt: skip
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    shot(page, "artifacts")

    # the reconcile report: the damaged order found missing and repaired
    page.goto(f"{demo.ui_url}/artifacts/key/cdc-reconcile-report")
    page.locator('a[href*="/artifacts/artifact/"]').first.click()
    expect(page.get_by_text("Reconciliation ").first).to_be_visible()
    expect(page.locator("tr", has_text="orders").first).to_contain_text("repaired")
    expect(page.get_by_text(f"orders: missing {demo.damaged_order}").first).to_be_visible()
    shot(page, "reconcile-report")

    # the cost report, with its tiering saving
    assert demo.run_of(COST_REPORT).ok
    page.goto(f"{demo.ui_url}/artifacts/key/cdc-cost-report")
    page.locator('a[href*="/artifacts/artifact/"]').first.click()
    expect(page.get_by_text("Cost report ").first).to_be_visible()
    expect(page.get_by_text("Totals: storage").first).to_contain_text("tiering saves")
    shot(page, "cost-report")
