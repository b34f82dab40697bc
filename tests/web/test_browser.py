"""The web app in a real browser (headless Chromium): log in, watch live inboxes, hit the scope wall, read the
lägesbild and the operations page. Events go through a real `hub worker`; the web app is `hub web` as a user
starts it. Each page is saved to test-artifacts/screenshots/<name>.png."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from hub.contract import events as ev
from hub.contract.outputs import AreaAlert, AuditRecord, Deadletter, Delivery, LagesbildAggregate
from tests import factories as f
from tests.hub.support import HubUnderTest
from tests.web.support import SCREENSHOTS, Login, WebUnderTest

pytestmark = pytest.mark.kafka

CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 90


def chrome() -> WebDriver:
    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1280,1100"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browsers() -> Iterator[Callable[[], WebDriver]]:
    """Opens browsers on demand (each test uses one or two); all are closed after the module."""
    if not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    opened: list[WebDriver] = []

    def open_one() -> WebDriver:
        driver = chrome()
        opened.append(driver)
        return driver

    yield open_one
    for driver in opened:
        driver.quit()


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT_S) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, f"timed out waiting for {what}")


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, beyond the window (Chromium's DevTools protocol)."""
    path = SCREENSHOTS / f"{name}.png"
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})  # fmt: skip
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 1000


def log_in(driver: WebDriver, web: WebUnderTest, login: Login, expect_path: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{web.url}/login")
    driver.find_element(By.ID, "username").send_keys(login.username)
    driver.find_element(By.ID, "password").send_keys(login.password)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(driver, lambda d: d.current_url == f"{web.url}{expect_path}", f"{login.username} to land on {expect_path}")


def live(driver: WebDriver) -> None:
    """Until the page's live stream is open; then mark the page, so a reload would show."""
    wait(driver, lambda d: d.find_element(By.ID, "stream-status").get_attribute("data-state") == "open",
         "the live stream to open")  # fmt: skip
    driver.execute_script("window.__samePage = true;")


def item(driver: WebDriver, event_id: str) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, f'li[data-key="d:{event_id}"]')
    return found[0] if found else None


def fetch_status(driver: WebDriver, path: str) -> int:
    """The status of a same-origin fetch from the page (with the browser's session cookie)."""
    status: int = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {redirect: 'manual'}).then(r => done(r.status), () => done(-1));", path)
    return status


def eid(event: ev.Event) -> str:
    return str(event.envelope.event_id)



def test_two_coordinators_see_only_their_own_live_inbox_update_without_reload(
    hub: HubUnderTest, web: WebUnderTest, users: dict[str, Login], browsers: Callable[[], WebDriver]
) -> None:
    laholm, halmstad = browsers(), browsers()
    laholm.get(f"{web.url}/inbox/sig/1381")  # not logged in: the login page, and back after
    wait(laholm, lambda d: "/login" in d.current_url, "the login page")
    assert laholm.find_element(By.TAG_NAME, "html").get_attribute("lang") == "sv"
    assert laholm.find_element(By.CSS_SELECTOR, "label[for=username]").text == "Användarnamn"
    screenshot(laholm, "login")
    log_in(laholm, web, users["laholm-sig"], "/inbox/sig/1381")
    log_in(halmstad, web, users["halmstad-soc"], "/inbox/socialtjanst/1380")
    live(laholm)
    live(halmstad)

    sig_person, other_person = f.make_pnr("20050111", "991"), f.make_pnr("20060222", "992")
    laholm_sig = f.sig_referral(sig_person, "1381")
    halmstad_sig = f.sig_referral(other_person, "1380")  # SIG in Halmstad: not Laholm SIG's business
    halmstad_minor = f.minor_suspected(municipality="1380", pnr=f.MINOR)
    laholm_minor = f.minor_suspected(municipality="1381", pnr=f.MINOR)  # Laholm's social services only
    hub.publish([f.consent("sig", sig_person, "1381"), laholm_sig, f.consent("sig", other_person, "1380"),
                 halmstad_sig, halmstad_minor, laholm_minor])  # fmt: skip

    mine = wait(laholm, lambda d: item(d, eid(laholm_sig)), "the SIG referral in Laholm SIG's inbox")
    theirs = wait(halmstad, lambda d: item(d, eid(halmstad_minor)), "the LUL notice in Halmstad's inbox")
    # Each item says what it is and on which legal basis; the personnummer is masked.
    assert "Remiss till sociala insatsgrupper" in mine.text
    assert "Samtycke (sig)" in mine.text
    assert "consent:sig" in mine.text
    assert f"{sig_person[:8]}-****" in mine.text
    assert "Lagstöd (LUL-6§)" in theirs.text
    assert f"{f.MINOR[:8]}-****" in theirs.text
    # Both arrived live: the pages were not reloaded.
    assert laholm.execute_script("return window.__samePage === true;")
    assert halmstad.execute_script("return window.__samePage === true;")

    # The other deliveries were made (so their absence below means something) and reached neither page.
    t = hub.topics
    elsewhere = {t.deliver("sig", "1380"): eid(halmstad_sig), t.deliver("socialtjanst", "1381"): eid(laholm_minor)}
    hub.read(list(elsewhere), quiet_s=1.0, until=lambda got: all(
        any(isinstance(r, Delivery) and r.event_id == e for r in got[topic]) for topic, e in elsewhere.items()))
    for driver in (laholm, halmstad):
        source = driver.page_source
        assert eid(halmstad_sig) not in source
        assert eid(laholm_minor) not in source
        assert sig_person not in source
        assert f.MINOR not in source
        assert other_person not in source
    assert item(laholm, eid(halmstad_minor)) is None
    assert item(halmstad, eid(laholm_sig)) is None
    screenshot(laholm, "inbox-laholm-sig")
    screenshot(halmstad, "inbox-halmstad-socialtjanst")


def test_outside_the_scope_is_403_for_pages_and_live_streams(
    web: WebUnderTest, users: dict[str, Login], browsers: Callable[[], WebDriver]
) -> None:
    driver = browsers()
    log_in(driver, web, users["laholm-sig"], "/inbox/sig/1381")
    driver.get(f"{web.url}/inbox/socialtjanst/1380")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Åtkomst nekad"
    screenshot(driver, "forbidden")
    assert fetch_status(driver, "/inbox/sig/1381") == 200
    assert fetch_status(driver, "/inbox/sig/1381/events") == 200  # resolves on the headers of the stream
    for path in ("/inbox/sig/1380", "/inbox/socialtjanst/1381", "/inbox/sig/1380/events",
                 "/inbox/socialtjanst/1381/events", "/lagesbild/1381", "/lagesbild/13/chart.svg", "/operator"):
        assert fetch_status(driver, path) == 403, path
    # An EventSource outside the scope is refused for good (no reconnect loop).
    driver.execute_script("window.__es = new EventSource('/inbox/sig/1380/events');")
    wait(driver, lambda d: d.execute_script("return window.__es.readyState;") == 2, "the refused stream to close")


def test_lagesbild_charts_weekly_counts_with_small_counts_suppressed(
    hub: HubUnderTest, web: WebUnderTest, users: dict[str, Login], browsers: Callable[[], WebDriver]
) -> None:
    week11 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # 2026-W11, a week no other test uses
    burglaries = [f.incident_notice("residential_burglary", "1381", area="Skottorp", occurred_at=week11)
                  for _ in range(4)]  # fmt: skip
    vandalism = f.incident_notice("vandalism", "1381", area="Skottorp", occurred_at=week11)
    promise = ev.KommunCitizenPromiseAction(
        envelope=f.envelope("kommun.citizen_promise_action", "1381", area="Skottorp", occurred_at=week11),
        payload=ev.CitizenPromiseActionPayload(promise_id="MEDB-1381-W11", action="Trygghetsvandring",
                                               category="residential_burglary",  # type: ignore[arg-type]
                                               action_date=date(2026, 3, 9), status="genomförd"),
    )  # fmt: skip
    hub.publish([*burglaries, vandalism, promise])
    t = hub.topics

    def arrived(got: dict[str, list[Any]]) -> bool:
        weekly = {(r.category, r.count, r.suppressed) for r in got[t.deliver("lagesbild", "1381")]
                  if isinstance(r, LagesbildAggregate) and r.period == "2026-W11" and r.area is None}
        return (("residential_burglary", 4, False) in weekly and ("vandalism", None, True) in weekly
                and any(isinstance(r, AreaAlert) and r.area == "Skottorp" for r in got[t.deliver("grannsamverkan",
                                                                                                 "1381")])
                and any(isinstance(r, Delivery) and r.event_id == eid(promise)
                        for r in got[t.deliver("medborgarloften", "1381")]))  # fmt: skip

    topics = [t.deliver("lagesbild", "1381"), t.deliver("grannsamverkan", "1381"), t.deliver("medborgarloften", "1381")]
    hub.read(topics, until=arrived, quiet_s=1.0)

    driver = browsers()
    log_in(driver, web, users["laholm-lagesbild"], "/lagesbild/1381")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Lägesbild – Laholm (1381)"
    counts = driver.find_element(By.CSS_SELECTOR, "table.counts")
    header = [th.text for th in counts.find_elements(By.CSS_SELECTOR, "thead th")]
    column = header.index("2026-W11")
    cells = {row.find_element(By.TAG_NAME, "th").text: [td.text for td in row.find_elements(By.TAG_NAME, "td")]
             for row in counts.find_elements(By.CSS_SELECTOR, "tbody tr")}  # fmt: skip
    assert cells["Bostadsinbrott"][column - 1] == "4"
    assert cells["Skadegörelse"][column - 1] == "<3"  # one vandalism: never shown as 1
    chart = driver.find_element(By.ID, "lagesbild-chart")
    wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", chart),
         "the chart image to load")  # fmt: skip
    assert chart.get_attribute("alt")
    svg: str = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0].src).then(r => r.text()).then(done, () => done(''));", chart)
    assert svg.startswith("<?xml")
    assert "<svg" in svg
    assert "Bostadsinbrott" in svg
    assert "Skadegörelse" in svg
    assert "&lt;3" in svg
    alerts = driver.find_element(By.CSS_SELECTOR, "ul.alerts").text
    assert "Bostadsinbrott i Skottorp" in alerts
    promises = driver.find_element(By.CSS_SELECTOR, "table.promises").text
    assert "MEDB-1381-W11" in promises
    screenshot(driver, "lagesbild-laholm")

    log_in(driver, web, users["lan-lagesbild"], "/lagesbild/13")  # Länsstyrelsen: the county totals
    assert driver.find_element(By.TAG_NAME, "h1").text == "Lägesbild – Hallands län (13)"
    county = driver.find_element(By.CSS_SELECTOR, "table.counts")
    header = [th.text for th in county.find_elements(By.CSS_SELECTOR, "thead th")]
    row = county.find_element(By.XPATH, ".//tbody/tr[th='Bostadsinbrott']")
    assert int(row.find_elements(By.TAG_NAME, "td")[header.index("2026-W11") - 1].text) >= 4
    assert "Bostadsinbrott i Skottorp" in driver.find_element(By.CSS_SELECTOR, "ul.alerts").text
    chart = driver.find_element(By.ID, "lagesbild-chart")
    wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", chart),
         "the county chart to load")  # fmt: skip
    screenshot(driver, "lagesbild-county")
    assert fetch_status(driver, "/lagesbild/1381") == 403  # the county user does not see a municipality's page


def test_operator_page_shows_dead_letters_lag_and_an_intact_audit_chain_without_personnummer(
    hub: HubUnderTest, web: WebUnderTest, users: dict[str, Login], browsers: Callable[[], WebDriver]
) -> None:
    garbage = b'{"envelope": {"subject": {"personnummer": "' + f.MINOR.encode() + b'"}}}'
    hub.publish([garbage], agency="polisen")
    hub.read([hub.topics.deadletter], quiet_s=0.5,
             until=lambda got: any(isinstance(d, Deadletter) and d.reason.value == "undecodable"
                                   for d in got[hub.topics.deadletter]))  # fmt: skip

    driver = browsers()
    log_in(driver, web, users["drift"], "/operator")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Drift"
    dead = driver.find_element(By.CSS_SELECTOR, "table.deadletters").text
    assert "Kunde inte avkodas" in dead
    assert "polisen.events" in dead
    assert driver.find_element(By.ID, "audit-status").text.startswith("Intakt:")
    lag = driver.find_element(By.CSS_SELECTOR, "table.lag").text
    assert f"{hub.namespace}agency.polisen.events" in lag
    throughput = driver.find_element(By.CSS_SELECTOR, "table.throughput").text
    received = re.search(r"Händelser in totalt (\d[\d\u00a0 ]*)", throughput)
    assert received
    assert int(re.sub(r"\D", "", received.group(1))) > 0
    source = driver.page_source
    assert f.MINOR not in source
    assert f.MINOR[2:] not in source
    screenshot(driver, "operator")
    # An operator sees no inbox.
    assert fetch_status(driver, "/inbox/sig/1381") == 403


def _reads(hub: HubUnderTest, until: Callable[[list[AuditRecord]], bool]) -> list[AuditRecord]:
    """The ``accessed`` records of the trail, read until ``until`` holds for them."""

    def reads(got: dict[str, list[Any]]) -> list[AuditRecord]:
        return [r for r in got[hub.topics.audit] if isinstance(r, AuditRecord) and r.decision.value == "accessed"]

    return reads(hub.read([hub.topics.audit], quiet_s=0, until=lambda g: until(reads(g))))


def test_every_page_view_and_live_session_is_recorded_in_the_audit_trail_before_it_is_shown(
    hub: HubUnderTest, web: WebUnderTest, users: dict[str, Login], browsers: Callable[[], WebDriver]
) -> None:
    driver = browsers()
    log_in(driver, web, users["laholm-sig"], "/inbox/sig/1381")
    shown_at_load = int(driver.find_element(By.ID, "inbox-count").text)
    live(driver)
    person = f.make_pnr("20070303", "993")
    referral = f.sig_referral(person, "1381")
    hub.publish([f.consent("sig", person, "1381"), referral])
    wait(driver, lambda d: item(d, eid(referral)), "the referral in the live inbox")
    driver.get("about:blank")  # the coordinator leaves: the live session ends

    inbox = hub.topics.deliver("sig", "1381")
    mine = "web:laholm-sig"

    def my_session(records: list[AuditRecord]) -> list[AuditRecord] | None:
        """This browser's live session: the one that ended with the referral among what it pushed (another
        test's session may still be open, and got the referral too)."""
        sessions: dict[str | None, list[AuditRecord]] = {}
        for r in records:
            if r.accessor == mine and r.channel == "web.stream":
                sessions.setdefault(r.session_id, []).append(r)
        ended = [s for s in sessions.values() if s[-1].phase == "end"
                 and any(eid(referral) in (r.event_ids or []) for r in s)]  # fmt: skip
        assert len(ended) <= 1, ended
        return ended[0] if ended else None

    records = [r for r in _reads(hub, lambda rs: my_session(rs) is not None) if r.accessor == mine]
    views = [r for r in records if r.channel == "web.inbox"]
    assert views, "the inbox page view is recorded"
    assert any(v.items == shown_at_load and v.target == inbox and v.phase == "view" for v in views), views
    stream = my_session(records)
    assert stream is not None, "the live session's end is recorded"
    assert stream[0].phase == "start"
    pushed = [r for r in stream if r.phase == "progress"]
    assert [r.event_ids for r in pushed if eid(referral) in (r.event_ids or [])] == [[eid(referral)]]
    assert stream[-1].items == sum(r.items or 0 for r in pushed)
    assert all((r.receiver, r.municipality_code, r.target) == ("sig", "1381", inbox) for r in records)
    leaked = any(person in r.model_dump_json() for r in records)
    assert not leaked

    # The operations page shows dead letters: a recorded read of hub.deadletter by the operator.
    log_in(browsers(), web, users["drift"], "/operator")
    ops = _reads(hub, lambda rs: any(r.accessor == "web:drift" and r.channel == "web.operator" for r in rs))
    assert {r.target for r in ops if r.accessor == "web:drift"} == {hub.topics.deadletter}
