"""Run a recipe / script as a subprocess in its own process group, killed as a whole on timeout (a launcher's
workers included, no orphan left behind), with its output in the assertion message on failure."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(
    cmd: list[str], env: dict[str, str], timeout: int = 300, check: bool = True
) -> subprocess.CompletedProcess:
    with subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
            raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s\n{err[-4000:]}") from None
    if check:
        assert child.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-6000:]}"
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)
