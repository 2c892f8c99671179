"""The Ray executor: evaluate jobs on a pool of Ray actors, locally or on a cluster.

Each actor is one long-lived worker process holding one torch thread (and, with
`gpus_per_worker > 0`, a share of a GPU that jobs with device `auto` run on) and its proxy
tasks, built once on its device, so a job costs only its training (compiling a program takes
under a millisecond). It runs `run_job`, so it computes exactly what the inline executor does.
The driver keeps every actor busy (jobs queue while all are busy and go out as one frees) and
hands results back in completion order (`ray.wait`).

Faults are results, never hangs: an actor that dies under a job (segfault, `os._exit`, OOM
kill, lost node) is replaced and the job retried on another worker up to `max_retries` times,
then recorded as `error`; a program that killed `quarantine_after` workers is quarantined (its
further jobs are `error` at once); a job running past `eval_timeout` seconds has its actor
killed and replaced and is recorded as `timeout`. Every wait on Ray is bounded. A Ray instance
that stops under the driver (its GCS, or the raylet of the driver's own node, killed or lost)
raises `ExecutorLost` within `LOST_AFTER_S` seconds instead of leaving the driver waiting forever.

`ray` is imported here only, when an executor is made, so `import optsearch.evaluators` stays light.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from optsearch.dsl import OptsearchError
from optsearch.evaluators.evaluate import EvalResult, resolve_task
from optsearch.evaluators.executor import EvalJob, ExecutorLost, JobResult, run_job
from optsearch.evaluators.ray_process import listening, set_ray_environment, start_watchdog, token_hint

POLL_S = 0.5               # longest single ray.wait: deadlines and placement are checked this often
GET_TIMEOUT_S = 30.0       # a ready result that still cannot be fetched counts as a lost worker
PROBE_EVERY_S = 1.0        # how often the GCS and the driver's raylet are asked whether they still listen
LOST_AFTER_S = 5.0         # ... and how long they may refuse before the Ray instance counts as gone


class _Worker:
    """One evaluation process (a Ray actor): set up once, then evaluate jobs one at a time."""

    def __init__(self, threads: int, worker_setup: Callable[[], None] | None) -> None:
        import ray
        import torch

        if worker_setup is not None:
            worker_setup()
        torch.set_num_threads(threads)
        self.device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        ctx = ray.get_runtime_context()
        self.name = f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}/pid{os.getpid()}"
        self.node_id = ctx.get_node_id()
        self._tasks: dict[tuple[str, str], Any] = {}

    def ready(self) -> tuple[str, str, str]:
        """(worker name, node id, device), once the actor is up."""
        return self.name, self.node_id, self.device

    def run(self, job: EvalJob) -> tuple[EvalResult, str, str]:
        """`run_job(job)` with this worker's tasks: built once, kept on its device. Device
        `auto` means this worker's: `cuda` when it owns a GPU share. Returns (result, worker, device)."""
        device = self.device if job.device == "auto" else job.device
        tasks = tuple(self._task(spec, device) for spec in job.tasks)
        return run_job(dataclasses.replace(job, tasks=tasks, device=device)), self.name, device

    def _task(self, spec: str, device: str):
        if (spec, device) not in self._tasks:
            self._tasks[spec, device] = resolve_task(spec, device)
        return self._tasks[spec, device]


@dataclass
class _Slot:
    """One place in the pool: its current actor and what it is doing."""

    index: int
    actor: Any = None
    name: str = "starting"
    node_id: str | None = None
    device: str = "cpu"
    ready_ref: Any = None          # set while the actor starts
    started: float = 0.0           # when the current actor was created
    job_ref: Any = None            # set while it runs a job
    job_id: int | None = None
    job_started: float = 0.0


class RayExecutor:
    """Runs jobs on `workers` Ray actors; results come back as they finish.

    `address=None` starts a local Ray instance (sized for `workers`) unless this process is
    already connected to one; `"auto"` or `"HOST:PORT"` joins a running cluster. `workers=None`
    sizes the pool from the CPUs (and GPUs) there. `gpus_per_worker` may be a fraction, to pack
    several small evaluations on one GPU; a job with device `auto` runs on `cuda` on a worker with
    a GPU share and on the CPU elsewhere (`cpu` and `cuda` are obeyed). `worker_setup` runs in each
    actor before its first job (tests use it to register fault-injection ops). A pool whose
    actors cannot be placed for `placement_timeout` seconds fails its queued jobs as `error`
    instead of waiting forever. Remaining keyword arguments go to `ray.init`.
    """

    def __init__(self, workers: int | None = None, address: str | None = None, gpus_per_worker: float = 0,
                 threads_per_worker: int = 1, max_retries: int = 2, quarantine_after: int = 2,
                 eval_timeout: float | None = None, worker_setup: Callable[[], None] | None = None,
                 placement_timeout: float = 300.0, **ray_init_kwargs: Any) -> None:
        _check(workers is None or workers >= 1, f"workers must be >= 1, got {workers}")
        _check(threads_per_worker >= 1, f"threads_per_worker must be >= 1, got {threads_per_worker}")
        _check(gpus_per_worker >= 0 and (gpus_per_worker <= 1 or float(gpus_per_worker).is_integer()),
               f"gpus_per_worker must be a fraction in [0, 1] or a whole number, got {gpus_per_worker}")
        _check(max_retries >= 0, f"max_retries must be >= 0, got {max_retries}")
        _check(quarantine_after >= 1, f"quarantine_after must be >= 1, got {quarantine_after}")
        _check(eval_timeout is None or eval_timeout > 0, f"eval_timeout must be > 0 seconds, got {eval_timeout}")
        if "ray" not in sys.modules:  # read once, when ray is imported
            set_ray_environment(address)
        import ray

        self._ray = ray
        self.threads_per_worker = threads_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries
        self.quarantine_after = quarantine_after
        self.eval_timeout = eval_timeout
        self.placement_timeout = placement_timeout
        self._worker_setup = worker_setup
        self._owns_ray = False
        self._probes: list[tuple[str, str, int]] | None = None   # (what, host, port) that must keep listening
        self._refusing: dict[str, float] = {}                     # what -> since when it refuses
        self._last_probe = -math.inf
        self._lost: str | None = None                             # why the Ray instance counts as gone
        self._watchdog: subprocess.Popen | None = None
        if not ray.is_initialized():
            self._start_ray(workers, address, ray_init_kwargs)
        try:
            if workers is None:
                workers = self._cluster_capacity()
            elif address is None and gpus_per_worker > 0:
                have = ray.cluster_resources().get("GPU", 0)
                _check(have >= gpus_per_worker * workers,
                       f"{workers} workers x gpus_per_worker={gpus_per_worker} need "
                       f"{gpus_per_worker * workers:g} GPUs; this machine has {have:g}")
        except OptsearchError:
            if self._owns_ray:
                ray.shutdown()
            raise
        self.workers = workers
        self._actor_class = ray.remote(_Worker).options(
            num_cpus=threads_per_worker, num_gpus=gpus_per_worker, max_restarts=0, max_concurrency=1)
        self._ids = itertools.count()
        self._queue: deque[int] = deque()                # job ids waiting for a free worker
        self._jobs: dict[int, EvalJob] = {}              # every job not yet handed back
        self._attempts: dict[int, list[str]] = {}        # job id -> why each earlier attempt failed
        self._done: deque[JobResult] = deque()           # finished, not yet handed back
        self._deaths: dict[str, list[str | None]] = {}   # program text -> nodes of workers that died under it
        self._alive_nodes: tuple[float, set[str]] = (-math.inf, set())
        self._start_failures = 0
        self._slots = [_Slot(i) for i in range(workers)]
        for slot in self._slots:
            self._spawn(slot)

    # ------------------------------------------------------------------ the Executor interface

    def submit(self, job: EvalJob) -> int:
        job_id = next(self._ids)
        self._jobs[job_id] = job
        self._attempts[job_id] = []
        self._queue.append(job_id)
        self._dispatch()
        return job_id

    def next_result(self, timeout: float | None = None) -> JobResult | None:
        """The next result to finish; None when nothing is pending or `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._dispatch()
            if self._done:
                return self._done.popleft()
            if not self._jobs:
                return None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            self._check_alive(now)
            self._enforce_timeouts(now)
            self._check_placement(now)
            if self._done:
                continue
            refs = [s.job_ref for s in self._slots if s.job_ref is not None]
            refs += [s.ready_ref for s in self._slots if s.ready_ref is not None]
            wait = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - now))
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=wait) if refs else ([], [])
            if not refs:
                time.sleep(wait)
            for ref in ready:
                self._collect(ref)

    def pending(self) -> int:
        return len(self._jobs)

    def close(self) -> None:
        """Kill every actor, and shut Ray down if this executor started it."""
        ray = self._ray
        for slot in self._slots:
            if slot.actor is not None:
                if self._lost is None:  # with the instance gone, its actors are too
                    try:
                        ray.kill(slot.actor, no_restart=True)
                    except Exception:  # already gone
                        pass
                slot.actor = slot.job_ref = slot.ready_ref = None
        self._queue.clear()
        self._jobs.clear()
        self._done.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
        if self._watchdog is not None:  # it ends what shutdown left (agents waiting on a lost GCS)
            self._watchdog.stdin.close()
            self._watchdog.wait(timeout=30)
            self._watchdog = None

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float | None = None) -> int:
        """Wait until every worker has started (or `timeout` seconds passed); how many are up.
        Not needed before submitting: jobs go to workers as they come up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            starting = [s.ready_ref for s in self._slots if s.ready_ref is not None]
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if not starting or left <= 0:
                break
            self._check_alive(time.monotonic())
            ready, _ = self._ray.wait(starting, num_returns=len(starting), timeout=left)
            for ref in ready:
                self._collect(ref)
        self._dispatch()
        return len(self.worker_names())

    def worker_names(self) -> list[str]:
        """The names of the actors that are up (node ip / node id / pid)."""
        return [s.name for s in self._slots if s.actor is not None and s.ready_ref is None]

    # ------------------------------------------------------------------ Ray start-up

    def _start_ray(self, workers: int | None, address: str | None, kwargs: dict) -> None:
        kwargs.setdefault("include_dashboard", False)
        kwargs.setdefault("log_to_driver", False)
        kwargs.setdefault("logging_level", "WARNING")
        if address is None:
            cpus = (workers or os.cpu_count() or 1) * self.threads_per_worker
            kwargs.setdefault("num_cpus", cpus)
            kwargs.setdefault("_node_ip_address", "127.0.0.1")
            # Ray starts its workers at nice 15. Evaluations are the work here, not background
            # chores: at nice 15 beside any other busy process they got 1/20 of a core (an mlp
            # evaluation took 87 s instead of 4 s). Read by the raylet this instance starts.
            os.environ.setdefault("RAY_worker_niceness", "0")
        else:
            kwargs["address"] = address
            host, _, port = address.rpartition(":")
            if "://" not in address and port.isdigit():
                _check_reachable(host, int(port))
                if host in ("127.0.0.1", "localhost"):  # a cluster on this machine's loopback
                    kwargs.setdefault("_node_ip_address", "127.0.0.1")
        # ray.init replaces this process's SIGTERM handler (Ray's C++ one prints a stack dump and
        # aborts); put back the caller's, so `kill` stops a Ray run the way it stops an inline one.
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        try:
            self._ray.init(**kwargs)
        except ConnectionError as e:
            raise OptsearchError(f"cannot join the Ray cluster at {address!r}: {_cause(e)}{token_hint(e)}") from None
        finally:
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        self._owns_ray = True
        if address is None and os.path.isdir("/proc"):
            self._watchdog = start_watchdog()

    def _check_alive(self, now: float) -> None:
        """Raise `ExecutorLost` when the GCS or the raylet of the driver's node has refused
        connections for `LOST_AFTER_S` seconds: nothing in flight will come back then, and Ray
        itself would wait forever (the raylet) or end the process without a word (the GCS, at 60 s)."""
        if self._lost is not None:
            raise ExecutorLost(self._lost)
        if now - self._last_probe < PROBE_EVERY_S:
            return
        self._last_probe = now
        if self._probes is None:
            self._probes = self._endpoints()
        for what, host, port in self._probes:
            if listening(host, port):
                self._refusing.pop(what, None)
                continue
            since = self._refusing.setdefault(what, now)
            if now - since >= LOST_AFTER_S:
                self._lost = (f"the Ray instance stopped: its {what} at {host}:{port} has not answered for "
                              f"{now - since:.0f} s (killed, or its machine lost)")
                raise ExecutorLost(self._lost)

    def _endpoints(self) -> list[tuple[str, str, int]]:
        """The GCS and the raylet of the node this driver runs on: the two processes it cannot lose."""
        ctx = self._ray.get_runtime_context()
        out = []
        host, _, port = (getattr(ctx, "gcs_address", "") or "").rpartition(":")
        if port.isdigit():
            out.append(("GCS", host, int(port)))
        node_id = ctx.get_node_id()
        for node in self._ray.nodes():
            if node["NodeID"] == node_id and node.get("NodeManagerPort"):
                out.append(("raylet", node["NodeManagerAddress"], int(node["NodeManagerPort"])))
        return out

    def _cluster_capacity(self) -> int:
        """How many workers the cluster's CPUs (and GPUs, when asked for) hold."""
        res = self._ray.cluster_resources()
        n = int(res.get("CPU", 0) // self.threads_per_worker)
        if self.gpus_per_worker > 0:
            n = min(n, int(res.get("GPU", 0) / self.gpus_per_worker + 1e-9))
        _check(n >= 1, f"the Ray cluster has no room for a worker ({self.threads_per_worker} CPU, "
                       f"{self.gpus_per_worker:g} GPU each); it has {res.get('CPU', 0):g} CPU, "
                       f"{res.get('GPU', 0):g} GPU")
        return n

    # ------------------------------------------------------------------ the pool

    def _spawn(self, slot: _Slot) -> None:
        slot.actor = self._actor_class.remote(self.threads_per_worker, self._worker_setup)
        slot.ready_ref = slot.actor.ready.remote()
        slot.name, slot.node_id, slot.started = "starting", None, time.monotonic()
        slot.job_ref = slot.job_id = None

    def _replace(self, slot: _Slot) -> None:
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # the actor or its node is already gone
            pass
        self._spawn(slot)

    def _dispatch(self) -> None:
        """Send queued jobs to idle actors (quarantined programs are answered at once)."""
        idle = [s for s in self._slots if s.actor is not None and s.ready_ref is None and s.job_ref is None]
        while self._queue:
            job_id = self._queue[0]
            job = self._jobs[job_id]
            kills = self.kills(job.program)
            if kills >= self.quarantine_after:
                self._queue.popleft()
                self._finish_failed(job_id, "error", f"quarantined: this program killed {kills} workers")
                continue
            if not idle:
                return
            self._queue.popleft()
            slot = idle.pop()
            slot.job_id, slot.job_started = job_id, time.monotonic()
            slot.job_ref = slot.actor.run.remote(job)

    def _collect(self, ref: Any) -> None:
        ray = self._ray
        starting = {s.ready_ref: s for s in self._slots if s.ready_ref is not None}
        running = {s.job_ref: s for s in self._slots if s.job_ref is not None}
        slot = starting.get(ref) or running.get(ref)
        if slot is None:  # a reference dropped since (its actor was killed)
            return
        if ref in starting:
            try:
                slot.name, slot.node_id, slot.device = ray.get(ref, timeout=GET_TIMEOUT_S)
                slot.ready_ref = None
                self._start_failures = 0
            except ray.exceptions.RayError as e:
                self._start_failures += 1
                if self._start_failures > 2 * len(self._slots):
                    self.close()
                    raise OptsearchError(f"Ray workers keep failing to start ({_cause(e, last=True)}); is "
                                         "optsearch installed on every node, in the same Python?") from None
                self._replace(slot)
            return
        job_id = slot.job_id
        try:
            result, worker, device = ray.get(ref, timeout=GET_TIMEOUT_S)
        except ray.exceptions.RayTaskError as e:  # a bug raised inside evaluation: the worker lives on
            slot.job_ref = slot.job_id = None
            self._finish_failed(job_id, "error", f"{type(e.cause).__name__ if e.cause else 'error'}: {_cause(e)}",
                                slot.name)
            return
        except (ray.exceptions.RayError, TimeoutError) as e:  # the worker died (or its node did)
            # "Unavailable" is a lost connection (a node or network gone), not a process the
            # program took down: retry the job without counting it against the program.
            self._worker_lost(slot, _cause(e), blame=not isinstance(e, ray.exceptions.ActorUnavailableError))
            return
        slot.job_ref = slot.job_id = None
        retries = len(self._attempts.pop(job_id))
        self._done.append(JobResult(job_id, self._jobs.pop(job_id), result, worker,
                                    {"retries": retries, "device": device}))

    def _worker_lost(self, slot: _Slot, cause: str, blame: bool) -> None:
        """Replace a dead actor; retry its job elsewhere, or fail it after `max_retries`."""
        job_id, job = slot.job_id, self._jobs[slot.job_id]
        worker = slot.name
        if blame:
            self._deaths.setdefault(job.program, []).append(slot.node_id)
        self._replace(slot)
        attempts = self._attempts[job_id]
        attempts.append(f"worker {worker} died: {cause}")
        kills = self.kills(job.program, fresh=True)
        if len(attempts) > self.max_retries or kills >= self.quarantine_after:
            note = f"; quarantined after killing {kills} workers" if kills >= self.quarantine_after else ""
            self._finish_failed(job_id, "error", f"worker died {len(attempts)} times ({attempts[-1]}){note}", worker)
        else:
            self._queue.appendleft(job_id)

    def _enforce_timeouts(self, now: float) -> None:
        if self.eval_timeout is None:
            return
        for slot in self._slots:
            if slot.job_ref is not None and now - slot.job_started > self.eval_timeout:
                job_id, worker = slot.job_id, slot.name
                self._replace(slot)
                self._finish_failed(job_id, "timeout", f"killed after eval_timeout={self.eval_timeout:g}s", worker,
                                    seconds=now - slot.job_started)

    def _check_placement(self, now: float) -> None:
        """Fail queued jobs when no actor is up and none could be placed for `placement_timeout`."""
        if not self._queue or any(s.ready_ref is None and s.actor is not None for s in self._slots):
            return
        if all(now - s.started > self.placement_timeout for s in self._slots):
            while self._queue:
                self._finish_failed(self._queue.popleft(), "error",
                                    f"no Ray worker could be placed in {self.placement_timeout:g}s "
                                    f"(needs {self.threads_per_worker} CPU, {self.gpus_per_worker:g} GPU)")

    def kills(self, program: str, fresh: bool = False) -> int:
        """How many workers died while running `program` on a node that is still alive.

        A death on a node that is gone too (a lost machine) is not the program's fault. Ray
        may report the actor's death before it notices the node's (seconds later), so this is
        asked again at each decision rather than fixed when the death is seen.
        """
        deaths = self._deaths.get(program)
        if not deaths:
            return 0
        checked, alive = self._alive_nodes
        if fresh or time.monotonic() - checked > 1.0:
            try:
                alive = {n["NodeID"] for n in self._ray.nodes() if n["Alive"]}
            except Exception:  # the cluster itself is unreachable: blame no program for it
                alive = set()
            self._alive_nodes = (time.monotonic(), alive)
        return sum(1 for node in deaths if node is None or node in alive)

    def _finish_failed(self, job_id: int, status: str, error: str, worker: str = "none",
                       seconds: float = 0.0) -> None:
        job = self._jobs.pop(job_id)
        retries = len(self._attempts.pop(job_id, []))
        self._done.append(JobResult(job_id, job, EvalResult(status, -math.inf, [], seconds, error),  # type: ignore[arg-type]
                                    worker, {"retries": retries}))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise OptsearchError(message)


def _check_reachable(host: str, port: int, timeout: float = 10.0) -> None:
    """Fail fast on a cluster address nothing listens at (`ray.init` would retry for minutes)."""
    try:
        socket.create_connection((host or "127.0.0.1", port), timeout=timeout).close()
    except OSError as e:
        raise OptsearchError(f"cannot reach a Ray cluster at {host}:{port} ({e.strerror or e}); start one with "
                             "`ray start --head` or pass --address auto on a cluster node") from None


def _cause(e: BaseException, last: bool = False) -> str:
    """The first (or last) line of a Ray error's message: the first says what failed, the last
    (of a traceback) why."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return ((lines[-1] if last else lines[0]) if lines else type(e).__name__)[:300]
