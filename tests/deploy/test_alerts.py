"""The shipped Prometheus alert rules are valid and fire on the situations they name (``promtool``), and
every series they use is one Countersign exports."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
if PROMTOOL is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs promtool (Debian's prometheus package; .ci/run installs it)")
    pytest.skip("promtool is not installed", allow_module_level=True)


async def promtool(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(PROMTOOL), *args, cwd=RULES, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_alert_rules_check_and_their_unit_tests_pass() -> None:
    code, out = await promtool("check", "rules", "alerts.yml")
    assert code == 0 and "SUCCESS" in out, out
    code, out = await promtool("test", "rules", "alerts.test.yml")
    assert code == 0 and "SUCCESS" in out, out


def test_alerts_use_only_series_that_exist() -> None:
    text = (RULES / "alerts.yml").read_text()
    used = set(re.findall(r"\b(countersign_[a-z_]+)", text))
    source = "".join(p.read_text() for p in (Path("api/services/metrics.py"),))
    exported = set(re.findall(r'"(countersign_[a-z_]+)"', source))
    # Counters are exported with _total, histograms with _sum, _count and _bucket.
    suffixes = ("_total", "_sum", "_count", "_bucket")
    names = exported | {n + s for n in exported for s in suffixes}
    assert used <= names, used - names
