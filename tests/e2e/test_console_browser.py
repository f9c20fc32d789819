"""The web console in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium): an approver edits and approves T-1002, two approvers complete T-1004's quorum, and script in a
ticket and in a rejection reason runs nothing.

Set ``COUNTERSIGN_SCREENSHOTS=docs/images`` to refresh the README's screenshots from this test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, serving
from tools.business import Ticket

XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script>"

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs Debian's chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@contextmanager
def chromium() -> Iterator[WebDriver]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(DRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def no_script_ran(d: WebDriver) -> bool:
    try:
        d.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return True
    return False


def sign_in(d: WebDriver, base: str, key: str) -> None:
    d.delete_all_cookies()
    d.get(base + "/ui")
    d.find_element(By.ID, "api_key").send_keys(key)
    d.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
    WebDriverWait(d, 15).until(lambda d: "/ui/inbox" in d.current_url)


def click(d: WebDriver, text: str) -> None:
    found = f"//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']"
    d.find_element(By.XPATH, found).click()


def wait_text(d: WebDriver, text: str) -> None:
    # While a form's answer loads, the old page's nodes go stale: keep looking until the new page says it.
    WebDriverWait(d, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: text in d.find_element(By.TAG_NAME, "body").text
    )


def shoot(d: WebDriver, tmp: Path, name: str) -> None:
    d.save_screenshot(str(tmp / name))
    target = os.environ.get("COUNTERSIGN_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / name, Path(target) / name)


async def in_browser(fn: Callable[..., None], *args: Any) -> None:
    # Selenium blocks; the app and the worker serve on this loop meanwhile.
    await asyncio.to_thread(fn, *args)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_people_decide_in_the_browser(stack: Stack, tmp_path: Path) -> None:
    await stack.store.insert_missing(
        "acme",
        [
            (
                Ticket,
                [
                    {
                        "id": "T-9001",
                        "customer_id": "C-101",
                        "order_id": "O-5002",
                        "subject": f"Chair arrived damaged {XSS}",
                        "body": f"The chair from order O-5002 arrived with a cracked base. {XSS}",
                        "requested_refund": 250.0,
                    }
                ],
            )
        ],
    )
    refund = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    quorum = await stack.start("support_drafting", {"ticket_id": "T-1004"})
    hostile = await stack.start("support_drafting", {"ticket_id": "T-9001"})
    [r1] = await stack.pending(refund["id"])
    [r2] = await stack.pending(quorum["id"])
    [r3] = await stack.pending(hostile["id"])
    assert r2["quorum"] == 2

    def edit_and_approve(d: WebDriver, base_url: str) -> None:
        sign_in(d, base_url, stack.keys["alice"])
        shoot(d, tmp_path, "inbox.png")
        d.find_element(By.CSS_SELECTOR, f"a[href='/ui/approvals/{r1['id']}']").click()
        wait_text(d, "Why it needs a person")
        shoot(d, tmp_path, "request.png")
        click(d, "Edit")
        amount = d.find_element(By.NAME, "amount")
        amount.clear()
        amount.send_keys("200")
        click(d, "Review changes")
        wait_text(d, "changed")
        click(d, "Approve edited")
        wait_text(d, "The request is now approved")

    def first_of_two(d: WebDriver, base_url: str, key: str, expect: str) -> None:
        sign_in(d, base_url, key)
        d.get(f"{base_url}/ui/approvals/{r2['id']}")
        click(d, "Approve")
        wait_text(d, expect)

    def hostile_text_stays_text(d: WebDriver, base_url: str) -> None:
        sign_in(d, base_url, stack.keys["alice"])
        d.get(f"{base_url}/ui/approvals/{r3['id']}")
        for detail in d.find_elements(By.TAG_NAME, "details"):
            detail.click()
        assert no_script_ran(d)
        assert "<script>alert(2)</script>" in d.find_element(By.TAG_NAME, "body").text
        d.find_element(By.ID, "reject-reason").send_keys(XSS)
        click(d, "Reject")
        wait_text(d, "The request is now rejected")
        assert no_script_ran(d)
        d.refresh()
        assert no_script_ran(d)
        assert "<img src=x onerror=alert(1)>" in d.find_element(By.TAG_NAME, "body").text

    async with serving(stack) as base_url:
        with chromium() as d:
            await in_browser(edit_and_approve, d, base_url)
            assert (await stack.result(refund["id"]))["status"] == "completed"
            approvals = (
                await stack.http.get(f"/v1/approvals/{r1['id']}", headers=stack.auth("alice"))
            ).json()
            assert approvals["arguments"]["amount"] == 200.0 and approvals["status"] == "approved"

            await in_browser(first_of_two, d, base_url, stack.keys["alice"], "pending: 1 of 2 approvals")
            await in_browser(first_of_two, d, base_url, stack.keys["bob"], "The request is now approved")
            assert (await stack.result(quorum["id"]))["status"] == "completed"

            await in_browser(hostile_text_stays_text, d, base_url)
            done = await stack.result(hostile["id"])
            assert done["status"] == "completed"
            rejected = (await stack.http.get(f"/v1/approvals/{r3['id']}", headers=stack.auth("alice"))).json()
            assert rejected["status"] == "rejected" and rejected["decisions"][0]["reason"] == XSS
