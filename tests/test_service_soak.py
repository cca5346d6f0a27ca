"""1,000 requests at concurrency 16 against `bentoml serve`: zero errors, and the server's open file
descriptors, temp files and memory come back to where they started (the old service leaked one fd and one
PNG per request until it hit its fd limit)."""

import concurrent.futures
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import photo
from tests.service_helpers import STYLE, encode, model_subset, serve, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _group(root: int) -> list[int]:
    """``root`` and all its descendants (bentoml's arbiter and the worker processes it spawns)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except FileNotFoundError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def _usage(pgid: int, tmp: Path) -> dict:
    fds = rss = 0
    for pid in _group(pgid):
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            rss += int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")).split()[1])
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    files = sum(len(f) for _, _, f in os.walk(tmp))
    return {"fds": fds, "rss_kb": rss, "tmp_files": files}


def test_thousand_requests_at_concurrency_16_leave_nothing_behind(model_dir, tmp_path):
    models = model_subset(model_dir, tmp_path / "models", ["sr-x3.onnx", f"style-{STYLE}.onnx"])
    bodies = [encode(photo(48 + 8 * (i % 4), 64, seed=i)) for i in range(32)]
    with serve(tmp_path / "srv", models) as s:
        wait_ready(s.url)
        tmp = tmp_path / "srv" / "tmp"

        def call(i):
            route, data = ("stylize", {"style": STYLE}) if i % 4 == 3 else ("upscale", {"scale": "3"})
            with httpx.Client(timeout=120) as c:
                r = c.post(f"{s.url}/{route}", files={"image": ("a.png", bodies[i % len(bodies)])}, data=data)
            return r.status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:  # warm-up: allocator pools, thread pools
            assert set(pool.map(call, range(64))) == {200}
        time.sleep(1)
        before = _usage(s.proc.pid, tmp)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(call, range(1000)))
        seconds = time.perf_counter() - t0
        time.sleep(2)
        after = _usage(s.proc.pid, tmp)
        assert len(_group(s.proc.pid)) >= 3  # the arbiter and two workers are measured
        print(f"1000 requests in {seconds:.1f} s ({1000 / seconds:.1f}/s); before {before}; after {after}")
        assert codes.count(200) == 1000, {c: codes.count(c) for c in set(codes)}
        assert abs(after["fds"] - before["fds"]) <= 5, (before, after)
        assert abs(after["tmp_files"] - before["tmp_files"]) <= 5, (before, after)
        assert after["rss_kb"] < before["rss_kb"] * 1.10, (before, after)
        # the server's TMPDIR is its own folder (service_helpers.serve_env): no srstyle-serve-* left in it
        assert not list(tmp.glob("srstyle-serve-*"))
