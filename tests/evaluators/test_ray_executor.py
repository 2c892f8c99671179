"""The Ray executor: same results as inline, every worker busy, and faults (dead workers, lost
nodes, crashing or hanging programs) that become results instead of hangs."""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import pytest
import torch

from optsearch.discovered import zoo_path
from optsearch.dsl import OptsearchError
from optsearch.evaluators import EvalJob, InlineExecutor

pytest.importorskip("ray")
from optsearch.evaluators.ray_executor import RayExecutor  # noqa: E402

pytestmark = pytest.mark.ray


def job(program: str, seed: int = 0) -> EvalJob:
    return EvalJob(program, tasks=("quadratic/small",), seeds=(seed,), lr_multipliers=(1.0,))


def zoo_job(name: str, seed: int = 0) -> EvalJob:
    return job(zoo_path(name).read_text(), seed)


def drain(ex, timeout: float = 60.0) -> dict:
    """Every pending result, by job id; fails instead of waiting past `timeout`."""
    out, deadline = {}, time.monotonic() + timeout
    while ex.pending():
        r = ex.next_result(timeout=max(0.0, deadline - time.monotonic()))
        assert r is not None, f"no result within {timeout}s; {ex.pending()} pending"
        assert r.job_id not in out, "a job was returned twice"
        out[r.job_id] = r
    return out


def pid_of(worker: str) -> int:
    return int(worker.rsplit("/pid", 1)[1])


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def fault_ops(nap: float = 0.005, barrier_dir: str | None = None, barrier_size: int = 2) -> Callable[[], None]:
    """A `worker_setup` that registers test-only ops in a worker's op registry:

    `crash(x)` ends the worker process (`os._exit`), `hang(x)` sleeps for an hour, `nap(x)` sleeps
    `nap` seconds per call (a slow but healthy program), and `meet(x)` (first call per process)
    waits until `barrier_size` workers have arrived in `barrier_dir` and fails after 30 s: a job
    using it finishes `ok` only if that many jobs ran at the same time. All return `x`.
    The returned function is a closure, so Ray ships it by value to workers that cannot
    import the test modules.
    """

    def setup() -> None:
        import os
        import time

        from optsearch.dsl.ops import OPS, Op, _register

        def crash(x):
            os._exit(1)

        def hang(x):
            time.sleep(3600)
            return x

        def slow(x):
            time.sleep(nap)
            return x

        arrived = []

        def meet(x):
            if not arrived:
                open(os.path.join(barrier_dir, str(os.getpid())), "w").close()
                deadline = time.monotonic() + 30
                while len(os.listdir(barrier_dir)) < barrier_size:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {len(os.listdir(barrier_dir))} workers met")
                    time.sleep(0.01)
                arrived.append(True)
            return x

        for name, fn in (("crash", crash), ("hang", hang), ("nap", slow), ("meet", meet)):
            if name not in OPS:
                _register(Op(name, ("x",), "elementwise", fn, "{0}", f"test-only fault op: {name}"))

    return setup


def program_with(op: str) -> str:
    """signSGD (which trains quadratic/small fine) with its gradient passed through `op`."""
    return f"def signsgd_{op}(w, g, lr):\n    u = {op}(g)\n    u = sign(u)\n    update = u * lr\n    return update\n"


# --------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("kwargs, message", [
    (dict(workers=0), "workers must be >= 1"),
    (dict(gpus_per_worker=1.5), "gpus_per_worker must be a fraction"),
    (dict(max_retries=-1), "max_retries must be >= 0"),
    (dict(eval_timeout=0), "eval_timeout must be > 0"),
])
def test_bad_arguments_are_user_errors(kwargs, message):
    with pytest.raises(OptsearchError, match=message):
        RayExecutor(**kwargs)


def test_importing_the_evaluators_does_not_import_ray():
    out = subprocess.run([sys.executable, "-c", "import sys, optsearch.evaluators as e; e.RayExecutor; "
                          "print('ray' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_a_cluster_address_that_does_not_answer_is_a_user_error():
    # In a fresh process (this one may already be connected to Ray, and then keeps that connection).
    script = (
        "from optsearch.evaluators.ray_executor import RayExecutor\n"
        "from optsearch.dsl import OptsearchError\n"
        "for address in ('127.0.0.1:1', 'auto'):\n"
        "    try:\n"
        "        RayExecutor(address=address)\n"
        "    except OptsearchError as e:\n"
        "        print(e)\n"
    )
    # `auto` finds any Ray instance running on this machine (Ray scans the processes for a GCS):
    # only where none runs must it fail.
    other_ray = any(_cmdline_mentions(p, "gcs_server") for p in os.listdir("/proc") if p.isdigit())
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "RAY_ADDRESS": ""})
    lines = out.stdout.splitlines()
    assert len(lines) == (1 if other_ray else 2), out.stderr[-2000:]
    assert lines[0].startswith("cannot reach a Ray cluster at 127.0.0.1:1")
    if not other_ray:
        assert lines[1].startswith("cannot join the Ray cluster at 'auto'")


# --------------------------------------------------------------------------- a local instance

def test_results_equal_the_inline_executors(ray_local):
    jobs = [zoo_job(name) for name in ("sgd", "adamw", "lion", "signsgd", "lion_adamw")]  # a role candidate too
    jobs.append(job("def broken(w, g, lr):\n    return g +\n"))
    inline = InlineExecutor()
    for j in jobs:
        inline.submit(j)
    expected = drain(inline)
    with RayExecutor(workers=2) as ex:
        ids = [ex.submit(j) for j in jobs]
        got = drain(ex)
    assert sorted(got) == ids
    for i in ids:
        want, have = expected[i].result, got[i].result
        assert (have.status, have.error is None) == (want.status, want.error is None)
        assert have.fitness == want.fitness
        assert [s.metrics for s in have.scores] == [s.metrics for s in want.scores]
        assert got[i].job == jobs[i] and got[i].extra == {"retries": 0, "device": "cpu"}
    assert got[0].result.status == "diverged" and got[5].result.status == "invalid"
    assert got[4].result.status == "ok" and got[4].result.fitness != got[2].result.fitness


def test_two_workers_evaluate_two_jobs_at_once_and_close_kills_them(ray_local, tmp_path):
    # `meet` only lets a job finish ok once two workers are inside a job at the same time.
    setup = fault_ops(barrier_dir=str(tmp_path), barrier_size=2)
    with RayExecutor(workers=2, worker_setup=setup) as ex:
        assert ex.workers == 2
        for seed in (0, 1):
            ex.submit(job(program_with("meet"), seed))
        got = drain(ex)
        assert ex.next_result(timeout=0.1) is None and ex.pending() == 0
    assert [r.result.status for r in got.values()] == ["ok", "ok"], [r.result.error for r in got.values()]
    pids = {pid_of(r.worker) for r in got.values()}
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids), "close() left a worker running"
    assert ray_local.is_initialized()  # not this executor's instance: left running


@pytest.mark.slow
def test_a_program_that_kills_its_worker_is_retried_then_error_then_quarantined(ray_local):
    crasher = program_with("crash")
    with RayExecutor(workers=2, max_retries=1, quarantine_after=2, worker_setup=fault_ops()) as ex:
        bad = ex.submit(job(crasher))
        good = [ex.submit(zoo_job("signsgd", seed)) for seed in range(3)]
        got = drain(ex)
        assert all(got[i].result.status == "ok" for i in good)
        crashed = got[bad]
        assert crashed.result.status == "error" and crashed.result.fitness == -math.inf
        assert "worker died 2 times" in crashed.result.error and "quarantined" in crashed.result.error
        assert crashed.extra["retries"] == 2
        # Quarantined: answered without running, by no worker, while every worker stays as it was.
        assert ex.wait_ready(timeout=60) == 2
        workers = sorted(ex.worker_names())
        again = ex.submit(job(crasher))
        r = ex.next_result(timeout=30)
        assert r.job_id == again and r.result.status == "error" and "quarantined" in r.result.error
        assert r.worker == "none" and r.extra["retries"] == 0 and r.result.seconds == 0.0
        assert sorted(ex.worker_names()) == workers
        # The pool was rebuilt and keeps working.
        ex.submit(zoo_job("adamw"))
        assert ex.next_result(timeout=30).result.status == "ok"


@pytest.mark.slow
def test_a_hanging_program_times_out_and_the_pool_keeps_working(ray_local):
    with RayExecutor(workers=2, eval_timeout=3.0, worker_setup=fault_ops()) as ex:
        hung = ex.submit(job(program_with("hang")))
        good = ex.submit(zoo_job("signsgd"))
        got = drain(ex, timeout=30)
        assert got[good].result.status == "ok"
        assert got[hung].result.status == "timeout" and "eval_timeout=3s" in got[hung].result.error
        assert gone(pid_of(got[hung].worker)), "the stuck worker was not killed"
        ids = [ex.submit(zoo_job("lion", seed)) for seed in range(2)]
        assert sorted(drain(ex, timeout=30)) == ids


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_workers_with_a_gpu_share_evaluate_on_cuda(ray_local):
    # Two workers on half a GPU each: both run at once on the one GPU; device "auto" picks cuda there.
    with RayExecutor(workers=2, gpus_per_worker=0.5) as ex:
        assert ex.wait_ready(timeout=60) == 2
        ids = [ex.submit(dataclasses.replace(zoo_job("adamw", seed), device="auto")) for seed in range(2)]
        got = drain(ex)
    assert sorted(got) == ids
    assert all(r.extra["device"] == "cuda" and r.result.status == "ok" for r in got.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_asking_for_gpus_on_a_machine_without_one_is_a_user_error(ray_local):
    with pytest.raises(OptsearchError, match=r"gpus_per_worker=0.5 need 1 GPUs; this machine has 0"):
        RayExecutor(workers=2, gpus_per_worker=0.5)


def _broken_setup():
    raise ImportError("no module named 'missing_on_this_node'")


@pytest.mark.slow
def test_workers_that_cannot_start_are_a_user_error_not_a_hang(ray_local):
    with pytest.raises(OptsearchError, match="missing_on_this_node.*installed on every node"):
        with RayExecutor(workers=1, worker_setup=_broken_setup) as ex:
            ex.submit(zoo_job("signsgd"))
            ex.next_result(timeout=60)


@pytest.mark.slow
def test_an_executor_that_started_ray_runs_workers_at_normal_priority_and_shuts_ray_down():
    # In a fresh process with its own Ray temp dir: start Ray on demand, evaluate, close; count the
    # processes whose command line names that dir while it runs and after.
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    script = (
        "import ray, sys\n"
        "sys.path.insert(0, %r)\n"
        "from test_ray_executor import ray_processes\n"
        "from optsearch.evaluators.ray_executor import RayExecutor\n"
        "from optsearch.evaluators import EvalJob\n"
        "ex = RayExecutor(workers=1)\n"
        "ex.submit(EvalJob(%r, seeds=(0,), lr_multipliers=(1.0,)))\n"
        "r = ex.next_result(timeout=60)\n"
        "import os\n"
        "nice = os.getpriority(os.PRIO_PROCESS, int(r.worker.rsplit('pid', 1)[1]))\n"
        "print(r.result.status, len(ray_processes(%r)), nice)\n"
        "ex.close()\n"
        "print(ray.is_initialized())\n"
    ) % (os.path.dirname(__file__), zoo_path("signsgd").read_text(), ray_tmp)
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "RAY_TMPDIR": ray_tmp})
        left = ray_processes(ray_tmp, settle=5.0)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (status, running, nice), (initialized,) = (line.split() for line in out.stdout.splitlines()[-2:])
    assert status == "ok" and int(running) >= 3  # at least the GCS, the raylet and a worker
    assert nice == "0"  # not Ray's default nice 15: evaluations are the work, not background chores
    assert initialized == "False"
    assert not left, f"Ray processes left behind: {left}"


def ray_processes(ray_tmp: str, settle: float = 0.0) -> list[str]:
    """Pids of processes whose command line names `ray_tmp`, waiting up to `settle` s for none."""
    deadline = time.monotonic() + settle
    while True:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_mentions(p, ray_tmp)]
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.1)


def _cmdline_mentions(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


# --------------------------------------------------------------------------- a simulated cluster
# Last in the file: the cluster fixture replaces the local instance.

@pytest.mark.slow
def test_losing_a_node_mid_run_loses_no_result_and_retries_its_job(ray_cluster):
    cluster, nodes = ray_cluster
    jobs = [job(program_with("nap"), seed) for seed in range(12)]  # ~0.7 s each: nap 3 ms x 200 steps
    with RayExecutor(workers=2, worker_setup=fault_ops(nap=0.003)) as ex:
        ids = [ex.submit(j) for j in jobs]
        results, removed, last_node = {}, None, None
        while ex.pending():
            r = ex.next_result(timeout=60)
            assert r is not None and r.job_id not in results
            results[r.job_id] = r
            node = r.worker.split("/")[1]
            # Two results in a row from different nodes: the earlier node was just given its next
            # job (the queue is not empty), so removing it now kills a job in flight.
            if removed is None and last_node not in (None, node) and len(results) < len(jobs) - 2:
                victim = next(n for n in nodes if n.node_id.startswith(last_node))
                cluster.remove_node(victim, allow_graceful=False)
                removed, done_before = last_node, dict(results)
            last_node = node
        blamed = ex.kills(jobs[0].program)
    assert removed is not None
    assert sorted(results) == ids  # every job answered once; nothing finished before was lost
    assert all(results[i] is r for i, r in done_before.items())
    assert [r.result.status for r in results.values()] == ["ok"] * len(jobs), \
        [r.result.error for r in results.values()]
    retried = [r for r in results.values() if r.extra["retries"]]
    assert retried, "the job in flight on the lost node was not retried"
    assert all(r.worker.split("/")[1] != removed for r in retried)
    assert blamed == 0  # the worker died with its node: not the program's fault
