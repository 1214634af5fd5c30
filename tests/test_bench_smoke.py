"""`python -m bench` at tiny sizes: every scenario runs against both servers and reports a row,
so the benchmark cannot rot unnoticed. The figures themselves mean nothing at these sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_scenario_reports_echat_and_bare(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    scenarios = [row["scenario"] for row in result["rows"]]
    assert any("idle WebSockets" in name for name in scenarios)
    assert any(name.startswith("GET /v1/info,") for name in scenarios)
    assert any(name.startswith("POST /v1/login") for name in scenarios)
    assert any("login storm" in name for name in scenarios)
    assert sum(name.startswith("fan-out") for name in scenarios) == 2
    assert any("rooms ×" in name for name in scenarios)
    assert sum(name.startswith("history") for name in scenarios) == 6
    for row in result["rows"]:
        if row["unit"] != "KiB":  # a dozen sockets may not move the resident size a page
            assert row["echat"] > 0 and row["bare"] > 0, row
            assert "errors" not in row["echat_detail"] + row["bare_detail"], row
    for server in ("echat", "bare", "framework"):
        assert result["details"]["idle"][server]["sockets"] == result["sizes"]["idle_sockets"]
        assert result["details"]["idle"][server]["errors"] == 0
    # Every message sent through echat was stored, and every delivery was made.
    for name, figures in result["details"].items():
        if name.startswith("fan-out") or "rooms ×" in name:
            assert figures["echat"]["errors"] == 0 and figures["bare"]["errors"] == 0, name
            assert figures["stored"] > 0
    assert result["table"] in done.stdout
