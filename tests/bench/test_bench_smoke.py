"""The benchmark command, at tiny sizes, against the session broker: every figure gets a number.

``python -m bench`` is not part of the test command; this runs its ``--smoke`` version once (about a
minute or two) so a change that breaks a benchmark is noticed by the test suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import NOTES, SMOKE, sections
from bench.report import Figure
from tests.kafka_env import security_env

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?$")


def figures() -> list[Figure]:
    return [f for s in sections(SMOKE) for f in s.figures]


def md_cells(text: str, f: Figure) -> list[str]:
    line = next((ln for ln in text.splitlines() if ln.startswith(f"| {f.label} ({f.unit}) |")), None)
    assert line is not None, f"no row for {f.key} in the written file"
    return [c.strip() for c in line.split("|")[1:-1]]


def may_lack(f: Figure) -> bool:
    """Only the broker's memory may be unknown: when HUB_KAFKA_BOOTSTRAP names a broker this machine cannot see."""
    return f.key == "rss.broker" and "HUB_KAFKA_BOOTSTRAP" in os.environ


@pytest.fixture(scope="module")
def smoke_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str],
                                                                                        str]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "benchmarks.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env.update(security_env())  # the session broker's CA and credentials folder
    # --work: the hub processes' logs stay with the test's files (the test run scans those for personnummer)
    command = ["--smoke", "--runs", "1", "--output", str(out), "--work", str(tmp / "work")]
    done = subprocess.run([sys.executable, "-m", "bench", *command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, f"python -m bench failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    assert out.exists(), done.stdout[-2000:]
    return done, out.read_text(encoding="utf-8")


def test_the_printed_table_has_a_number_for_every_figure(smoke_run: tuple[subprocess.CompletedProcess[str], str]
                                                         ) -> None:  # fmt: skip
    stdout = smoke_run[0].stdout
    missing = []
    for f in figures():
        line = next((ln for ln in stdout.splitlines() if ln.startswith(f"{f.label} ({f.unit})")), None)
        median = line[len(f"{f.label} ({f.unit})"):].split()[0] if line else None
        if (median is None or not NUMBER.match(median)) and not may_lack(f):
            missing.append(f"{f.key}: {line!r}")
    assert not missing, "figures without a number in the printed table:\n" + "\n".join(missing)


def test_the_written_file_has_every_figure_with_its_target_and_the_notes(
    smoke_run: tuple[subprocess.CompletedProcess[str], str],
) -> None:
    text = smoke_run[1]
    for f in figures():
        _, median, runs, target, met = md_cells(text, f)
        if may_lack(f) and median == "n/a":
            continue
        assert NUMBER.match(median), f"{f.key}: median {median!r}"
        assert all(NUMBER.match(r) for r in runs.split(" / ")), f"{f.key}: runs {runs!r}"
        assert target == f.target
        assert met in (("—",) if f.met is None else ("yes", "NO")), f"{f.key}: met? {met!r}"
    # the targets the issue holds the hub to are in the table
    for key, target in [("ingest.batch_eps", "≥ 15,000 (#14)"), ("ingest.single_eps", "≥ 3,000 (#14)"),
                        ("worker.p2.worker_eps", "≥ 20,000"), ("worker.worker_eps", "≥ 11,000"),
                        ("worker.cpu_us", "≤ 50"), ("worker.ratio", "≥ 0.2"), ("e2e.p99_ms", "≤ 100 ms (#14)"),
                        ("recovery.load_s", "≤ 15 s")]:  # fmt: skip
        assert next(f for f in figures() if f.key == key).target == target
    # the machine, and the hand-written analysis verbatim below the table
    assert re.search(r"^\| CPU \| .+ \|$", text, re.M)
    assert re.search(r"^\| Python \| .*3\.\d+", text, re.M)
    assert "| Kafka | " in text
    assert NOTES.read_text(encoding="utf-8").strip() in text
    assert text.index("| figure | median | runs | target | met? |") < text.index("## Notes and analysis")
