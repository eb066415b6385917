"""`make demo` and `make demo-stop` as a person runs them: the demo comes up
with traffic and a live view; `python -m lab down` from another shell ends
it, and nothing is left behind (processes, namespaces, links, the temporary
directory). `make test` also runs `make demo-check` (the headless check)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from lab import netns
from lab.lab import RECORDS, REPO, pid_alive
from lab.topology import default_topology

DEMO = default_topology(prefix="esd")


def test_demo_runs_and_demo_stop_leaves_nothing(tmp_path: Path) -> None:
    record = RECORDS / f"{DEMO.prefix}.json"
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "lab", "demo"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        workdir: Path | None = None
        while True:
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no traffic in the demo"
            if record.exists():
                workdir = Path(json.loads(record.read_text())["workdir"])
                status = workdir / "h1" / "traffic.json"
                if status.exists() and all(
                    r["count"] > 0 for r in json.loads(status.read_text())["received"].values()
                ):
                    break
            time.sleep(0.1)
        procs = [int(p) for p in json.loads(record.read_text())["pids"].values()]
        down = subprocess.run(
            [sys.executable, "-m", "lab", "down"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        assert demo.wait(20) == 0
        assert [ns for ns in netns.namespaces() if ns.startswith(f"{DEMO.prefix}-")] == []
        assert not Path(f"/sys/class/net/{DEMO.prefix}-mgmt").exists()
        assert [p for p in procs if pid_alive(p)] == []
        assert workdir is not None and not workdir.exists()
        assert not record.exists()
        text = (tmp_path / "demo.log").read_text()
        assert "ToR A: routes per VPN" in text and "torn down" in text
    finally:
        if demo.poll() is None:
            demo.kill()
            subprocess.run([sys.executable, "-m", "lab", "down"], cwd=REPO, check=False)
