"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) on MLflow's web UI.

Chromium runs with a fixed flag set for this closed network (no background connections) and a
fresh profile; Playwright's own switches are left out (``ignore_default_args``), so only
``--remote-debugging-pipe`` (how Playwright talks to it) is added.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
RUN_NAME_CELL = '[col-id="attributes.`Run Name`"]'  # the runs table (AG Grid) name column


def compare_runs(
    base_url: str, experiment_id: str, names: list[str], screenshot: Path, timeout_s: float = 60
) -> str:
    """Open the experiment's runs table, expand the parent run, tick the runs ``names``, click
    Compare; save a screenshot of the comparison page and return its text."""
    from playwright.sync_api import expect, sync_playwright

    profile = tempfile.mkdtemp(prefix="harness-chromium-")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                ignore_default_args=True,
                args=[*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
            )
            try:
                page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
                page.set_default_timeout(timeout_s * 1000)
                expect.set_options(timeout=timeout_s * 1000)
                page.goto(f"{base_url}/#/experiments/{experiment_id}/runs")
                page.locator(f'[role="row"][row-id] {RUN_NAME_CELL}').first.wait_for()
                if not _row(page, names[0]).count():  # nested runs hide under their parent
                    parent = page.locator(f'[role="row"][row-id]:has({RUN_NAME_CELL} button)')
                    parent.first.locator(f"{RUN_NAME_CELL} button").first.click()
                    _row(page, names[0]).first.wait_for()
                for name in names:
                    row = _row(page, name).first
                    row.scroll_into_view_if_needed()
                    row.locator("input.ag-checkbox-input").check()
                page.get_by_role("button", name="Compare", exact=True).click()
                page.wait_for_url(re.compile(r"#/compare-runs\?"))
                expect(
                    page.get_by_text(re.compile(rf"Comparing {len(names)} Runs"))
                ).to_be_visible()
                expect(page.locator("table.mlflow-compare-table").first).to_be_visible()
                _grow_to_content(page)
                page.screenshot(path=str(screenshot), full_page=True)
                return page.inner_text("body")
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _row(page, name: str):
    """The runs-table row whose Run Name cell links to ``name``."""
    return page.get_by_role("row").filter(
        has=page.locator(RUN_NAME_CELL).get_by_role("link", name=name, exact=True)
    )


def _grow_to_content(page) -> None:
    """MLflow scrolls inside an inner panel, so a full-page screenshot shows one screen: make
    the window as tall as that panel's content (at most 8,000 px)."""
    hidden = page.evaluate("""() => Math.max(0, ...[...document.querySelectorAll('*')]
        .filter(e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowY)
                     && e.clientHeight > 200)
        .map(e => e.scrollHeight - e.clientHeight))""")
    if hidden > 0:
        size = page.viewport_size
        page.set_viewport_size(
            {"width": size["width"], "height": min(size["height"] + int(hidden) + 40, 8000)}
        )
        page.wait_for_timeout(500)
