"""Every human read recorded, and the register extract, as users run them: `hub tail` and `hub audit subject`
as subprocesses against a real worker on the secured broker. The extract's HTML report is rendered in
headless Chromium and saved to test-artifacts/screenshots/register-extract.png."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.contract.outputs import AuditRecord
from tests import factories as f
from tests.hub.support import REPO, HubUnderTest, running_hub
from tests.web.support import SCREENSHOTS

pytestmark = pytest.mark.kafka

CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUnderTest]:
    with running_hub(kafka_bootstrap, tmp_path_factory.mktemp("extract"), "extract") as h:
        yield h


def cli(hub: HubUnderTest, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=hub.env, input=stdin,
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip


def accessed(hub: HubUnderTest, until: Callable[[list[AuditRecord]], bool]) -> list[AuditRecord]:
    def reads(got: dict[str, list[Any]]) -> list[AuditRecord]:
        return [r for r in got[hub.topics.audit] if isinstance(r, AuditRecord) and r.decision.value == "accessed"]

    return reads(hub.read([hub.topics.audit], quiet_s=0, until=lambda g: until(reads(g))))



def test_hub_tail_records_who_read_which_inbox_how_much_and_whether_identities_were_shown(hub: HubUnderTest) -> None:
    minors = [f.minor_suspected(municipality="1383"), f.minor_suspected(municipality="1383")]
    hub.publish(minors)
    inbox = hub.topics.deliver("socialtjanst", "1383")
    hub.read([inbox], until=lambda g: len(g[inbox]) >= 2, quiet_s=0)
    shown = cli(hub, "tail", "socialtjanst", "-m", "1383", "--from-beginning", "--max", "2", "--reveal")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 2

    def session_ended(records: list[AuditRecord]) -> bool:
        return any(r.channel == "cli.tail" and r.phase == "end" and r.target == inbox for r in records)

    records = [r for r in accessed(hub, session_ended) if r.channel == "cli.tail" and r.target == inbox]
    assert [r.phase for r in records] == ["start", "progress", "end"]
    start, progress, end = records
    assert {r.accessor for r in records} == {"socialtjanst-1383"}  # the inbox's own principal
    assert all(r.revealed for r in records)
    assert {(r.receiver, r.municipality_code) for r in records} == {("socialtjanst", "1383")}
    assert progress.items == 2
    assert sorted(progress.event_ids or []) == sorted(str(m.envelope.event_id) for m in minors)
    assert end.items == 2
    assert start.items == 0
    leaked = any(f.MINOR in r.model_dump_json() for r in records)
    assert not leaked


def test_the_register_extract_lists_exactly_a_persons_decisions_and_reads_and_is_itself_recorded(
    hub: HubUnderTest, tmp_path: Path
) -> None:
    person, other = f.make_pnr("20110707", "994"), f.make_pnr("20060222", "992")  # a 15-year-old, an adult
    laholm, halmstad = f.sig_referral(person, "1381"), f.sig_referral(person, "1380")  # no consent in Halmstad
    minor = f.minor_suspected(municipality="1381", pnr=person)  # to Laholm's social services by statute
    not_theirs = f.sig_referral(other, "1381")
    hub.publish([f.consent("sig", person, "1381"), f.consent("sig", other, "1381"), laholm, halmstad, minor,
                 not_theirs])  # fmt: skip
    sig, social = hub.topics.deliver("sig", "1381"), hub.topics.deliver("socialtjanst", "1381")
    hub.read([sig, social], until=lambda g: len(g[sig]) >= 2 and len(g[social]) >= 1, quiet_s=0)
    for args in (("sig", "--max", "2"), ("socialtjanst", "--max", "1", "--reveal")):  # each inbox's own principal
        read = cli(hub, "tail", args[0], "-m", "1381", "--from-beginning", *args[1:])
        assert read.returncode == 0, read.stderr
    accessed(hub, lambda rs: {r.target for r in rs if r.channel == "cli.tail" and r.phase == "end"} >= {sig, social})

    report = tmp_path / "registerutdrag.html"
    done = cli(hub, "audit", "subject", "--json", "--html", str(report), stdin=f"{person}\n")
    assert done.returncode == 0, done.stderr
    leaked = person in done.stdout + done.stderr or other in done.stdout  # booleans: never print the number
    assert not leaked
    x = json.loads(done.stdout)
    named = {"laholm": laholm, "halmstad": halmstad, "minor": minor}
    eid = {str(e.envelope.event_id): name for name, e in named.items()}
    events = {eid.get(e["event_id"], "consent" if e["event_type"] == "kommun.consent_given" else e["event_id"]): e
              for e in x["events"]}  # fmt: skip
    assert set(events) == {"consent", "laholm", "halmstad", "minor"}
    decided = {name: sorted((d["decision"], d["receiver"], d["municipality_code"], d["legal_basis"])
                            for d in e["decisions"]) for name, e in events.items()}  # fmt: skip
    assert decided == {
        "consent": [("recorded", "consent", "1381", "sig")],
        "laholm": [("delivered", "sig", "1381", "consent:sig")],
        "halmstad": [("refused", "sig", "1380", "consent:sig")],
        "minor": [("aggregated", "lagesbild", "1381", "aggregated"), ("aggregated", "ungdom", "1381", "aggregated"),
                  ("delivered", "socialtjanst", "1381", "statute:LUL-6§")],
    }
    assert events["halmstad"]["decisions"][0]["reason"] == "no consent recorded for scope sig"
    assert "payload.reason" in events["laholm"]["decisions"][0]["fields_disclosed"]
    # Each inbox's read of this person's delivery (the social services' with the number shown), no other.
    reads = {name: [(r["accessor"], r["channel"], r["revealed"]) for r in e["reads"]] for name, e in events.items()}
    assert reads == {"consent": [], "laholm": [("sig-1381", "cli.tail", False)], "halmstad": [],
                     "minor": [("socialtjanst-1381", "cli.tail", True)]}  # fmt: skip
    assert x["counts"]["reads"] == 2
    assert x["earlier_extracts"] == []
    table = cli(hub, "audit", "subject", stdin=f"{person}\n").stdout  # the default, readable form
    assert "4 events, 2 delivered, 1 refused, 2 counted only, 1 consents recorded, 2 recorded reads, 1 earlier" in table
    assert f"by socialtjanst-1381 via cli.tail ({social})" in table

    # The extract is an audited read too: the next one lists it, by the registrar who made it.
    again = cli(hub, "audit", "subject", "--json", stdin=f"{person}\n")
    assert again.returncode == 0, again.stderr
    assert [r["accessor"] for r in json.loads(again.stdout)["earlier_extracts"]] == ["registrar", "registrar"]
    # Someone else's extract holds none of it.
    theirs = json.loads(cli(hub, "audit", "subject", "--json", stdin=f"{other}\n").stdout)
    assert not {e["event_id"] for e in theirs["events"]} & set(eid)

    html = report.read_text(encoding="utf-8")
    assert "Registerutdrag" in html
    assert "Remiss till sociala insatsgrupper" in html
    leaked = person in html
    assert not leaked
    _screenshot(report)


def test_the_extract_takes_the_personnummer_only_from_stdin_and_names_no_bad_number(hub: HubUnderTest) -> None:
    bad = "20050111-9920"  # a wrong check digit
    refused = cli(hub, "audit", "subject", stdin=f"{bad}\n")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: personnummer has an invalid check digit"
    leaked = bad in refused.stdout + refused.stderr
    assert not leaked
    in_argv = cli(hub, "audit", "subject", f.make_pnr("20050111", "991"), stdin="")
    assert in_argv.returncode == 2
    assert "unrecognized arguments" in in_argv.stderr


def _screenshot(report: Path) -> None:
    if not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    from tests.web.test_browser import chrome, screenshot

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver = chrome()
    try:
        driver.get(report.as_uri())
        assert driver.find_element("id", "summary").text.startswith("4 händelser")
        screenshot(driver, "register-extract")
    finally:
        driver.quit()
