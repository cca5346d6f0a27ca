"""Run one command the way a flow task needs it: its output streamed line by line to a callback while it
runs, a deadline, and the whole process group (`dvc` and the stage it started) killed on timeout, on an
error in the caller, or on cancellation (Prefect raises in the flow's thread, and this ``finally`` runs)."""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable


class StageFailed(RuntimeError):
    pass


class StageTimeout(StageFailed):
    pass


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group (DVC then releases its lock), SIGKILL to whatever is left after
    ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_streaming(cmd: list[str], cwd: Path, env: dict[str, str], on_line: Callable[[str], None],
                  timeout: float | None = None, tail_lines: int = 60) -> str:
    """Run ``cmd`` in its own session, pass each output line to ``on_line`` as it arrives; return the last
    ``tail_lines`` lines. Raises StageFailed (non-zero exit) or StageTimeout (after ``timeout`` seconds)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1, start_new_session=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise StageTimeout(f"{' '.join(cmd)} ran past its {timeout:g} s timeout and was stopped:\n"
                                   + "\n".join(tail))
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            tail.append(line)
            on_line(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            kill_group(proc)
        else:
            try:  # the leader exited; anything it left in its group goes too
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    if code != 0:
        raise StageFailed(f"{' '.join(cmd)} exited with {code}:\n" + "\n".join(tail))
    return "\n".join(tail)
