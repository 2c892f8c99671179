"""`optsearch evolve` on a local Ray instance, stopped from outside: SIGTERM to the driver or its
process group, and a Ray instance that dies under it. Each driver runs in its own session with its
own Ray temp dir, so every process it started can be found (and none is left behind)."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = """\
name: faults
seed: 0
warm_start: adamw
search: {population: 4, tournament: 2}
evaluation: {tasks: [quadratic/small], seeds: 1, lr_multipliers: [1.0]}
budget: {evaluations: 100000}
executor: {kind: ray, workers: 2}
"""


class Driver:
    """`optsearch evolve` in a new session (its processes: that session's), on loopback."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "run.yaml").write_text(CONFIG)
        self.run_dir = tmp / "run"
        self.ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
        env = {**os.environ, "RAY_TMPDIR": self.ray_tmp, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "optsearch", "evolve", str(tmp / "run.yaml"),
                                      "--run-dir", str(self.run_dir), "--quiet"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)

    def wait_for_evaluations(self, n: int = 3, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.evaluations() >= n:
                return
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"no {n} evaluations within {timeout:g}s: {self.proc.communicate()[1][-2000:]}")

    def evaluations(self) -> int:
        try:
            with sqlite3.connect(f"file:{self.run_dir / 'run.db'}?mode=ro", uri=True, timeout=1) as db:
                return db.execute("SELECT count(*) FROM evaluations").fetchone()[0]
        except sqlite3.Error:
            return 0

    def processes(self) -> dict[int, str]:
        """pid -> program name of every live process of the driver's session (the driver included)."""
        out = {}
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    name = f.read().split(b"\0")[0].decode(errors="replace")
            except (OSError, IndexError):
                continue
            if int(fields[3]) == self.proc.pid and fields[0] != "Z":
                out[int(p)] = name
        return out

    def finish(self, timeout: float) -> tuple[int, str]:
        """(exit code, stderr); a driver still running after `timeout` seconds fails the test."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the driver was still running {timeout:g}s later (a hang)")
        return self.proc.returncode, err

    def left_after(self, settle: float) -> dict[int, str]:
        deadline = time.monotonic() + settle
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def kill(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def driver(tmp_path):
    d = Driver(tmp_path)
    yield d
    d.kill()
    d.proc.wait(timeout=30)
    shutil.rmtree(d.ray_tmp, ignore_errors=True)


def _resumes(run_dir: Path) -> None:
    """The store is intact: an inline resume continues it to a larger budget."""
    with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
        done = db.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    out = subprocess.run([sys.executable, "-m", "optsearch", "resume", str(run_dir), "--executor", "inline",
                          "--max-evals", str(done + 2), "--quiet"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stopped: evaluation budget reached" in out.stdout


@pytest.mark.parametrize("target", ["driver", "group"])
def test_sigterm_stops_a_ray_run_cleanly_and_leaves_no_process(driver, target):
    driver.wait_for_evaluations()
    if target == "driver":
        os.kill(driver.proc.pid, signal.SIGTERM)
    else:  # a scheduler or a terminal stopping the whole job
        os.killpg(driver.proc.pid, signal.SIGTERM)
    code, err = driver.finish(timeout=60)
    assert code == 130, err[-3000:]  # as for Ctrl-C; not Ray's abort (134) or exit 1
    assert "SIGTERM received" not in err  # no C++ stack dump
    assert "Token authentication" not in err  # Ray's warning at every local start, for nothing done wrong
    assert err.strip().splitlines()[-1] == (f"optsearch: interrupted; every finished evaluation is stored. "
                                            f"Continue with `optsearch resume {driver.run_dir}`")
    assert not driver.left_after(settle=5.0), "Ray processes outlived the driver"
    _resumes(driver.run_dir)


@pytest.mark.parametrize("process", ["raylet", "gcs_server"])
def test_a_ray_instance_killed_under_the_driver_stops_it_with_the_way_to_resume(driver, process):
    driver.wait_for_evaluations()
    victim = [pid for pid, name in driver.processes().items() if name.endswith(f"/{process}")]
    assert len(victim) == 1, driver.processes()
    os.kill(victim[0], signal.SIGKILL)
    code, err = driver.finish(timeout=45)  # before the change: a hang (raylet) or a silent exit at 60 s (GCS)
    assert code == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("optsearch: error: the Ray instance stopped") and \
        f"Continue with `optsearch resume {driver.run_dir}`" in last, err[-3000:]
    # Ray's agents, left waiting on a lost GCS, stayed a minute before the change.
    assert not driver.left_after(settle=5.0), "Ray processes outlived the driver"
    _resumes(driver.run_dir)


def test_a_sigkilled_driver_leaves_no_ray_process_behind(driver):
    driver.wait_for_evaluations()
    os.kill(driver.proc.pid, signal.SIGKILL)
    driver.finish(timeout=30)
    # Ray's reaper takes the GCS and the raylet at once; its agents stayed a minute before the change.
    assert not driver.left_after(settle=10.0), "Ray processes outlived the driver"
    _resumes(driver.run_dir)
