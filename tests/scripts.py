"""Run a recipe / script as a subprocess in its own process group, killed as a whole on timeout (a launcher's
workers included, no orphan left behind), with its output in the assertion message on failure."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, read from /proc (torchrun starts its workers in sessions of their own,
    so killing the launcher's process group alone would leave them holding the output pipes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL the process group of `pid` and every descendant, whatever group or session it is in."""
    tree = _descendants(pid)
    for target in (pid, *tree):
        for kill in (lambda t: os.killpg(t, signal.SIGKILL), lambda t: os.kill(t, signal.SIGKILL)):
            try:
                kill(target)
            except (ProcessLookupError, PermissionError):
                pass


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
            _kill_tree(child.pid)
            out, err = child.communicate(timeout=30)
            raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s\n{err[-4000:]}") from None
    if check:
        assert child.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-6000:]}"
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def script_module(relpath: str):
    """A script of the repository as a module (recipes/ and benchmarks/ are not packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(relpath).stem, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
