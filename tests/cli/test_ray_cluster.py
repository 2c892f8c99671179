"""The README's cluster commands, for real: `ray start --head` (token authentication on) on
loopback, then `optsearch evolve --address HOST:PORT`, from the shell and from Python. The head
runs in its own session with its own HOME (its token) and temp dir, and is stopped by signalling
that session, never by `ray stop` (which stops every Ray instance of the user)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent
CONFIG = """\
name: tiny
seed: 0
warm_start: adamw
search: {population: 4, tournament: 2}
evaluation: {tasks: [quadratic/small], seeds: 1, lr_multipliers: [1.0]}
budget: {evaluations: 6}
funnel: {tasks: [quadratic/small], seeds: 1, top: 1}
executor: {kind: ray}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(sid: int) -> list[int]:
    pids = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(p))
    return pids


@pytest.fixture
def head(tmp_path):
    """A `ray start --head --block` on 127.0.0.1 with a token generated as the README says; yields
    (address, environment of a user on that machine)."""
    home = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        env.pop(key, None)
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True,
                   timeout=60)
    assert (home / ".ray" / "auth_token").read_text().strip()
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", str(home / "ray")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", env
    finally:
        proc.send_signal(signal.SIGTERM)  # --block: the head stops its processes and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_the_readme_cluster_commands_finish_a_search_with_token_authentication(head, tmp_path):
    address, env = head
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    out = subprocess.run([str(BIN / "optsearch"), "evolve", str(tmp_path / "tiny.yaml"), "--address", address,
                          "--run-dir", str(tmp_path / "cli"), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "stopped: evaluation budget reached; 6 evaluations" in out.stdout
    assert "Token authentication" not in out.stderr  # nothing to warn a user who did nothing wrong about

    # From Python, through the function the CLI calls (in a fresh process: Ray reads its
    # authentication mode from the environment when it is imported).
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from optsearch.config import load_config\n"
        "from optsearch.run import evolve, with_overrides\n"
        "config = with_overrides(load_config(sys.argv[1]), address=sys.argv[2])\n"
        "outcome, store = evolve(config, Path(sys.argv[3]))\n"
        "store.close()\n"
        "print(outcome.reason, outcome.counters.evaluations)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tiny.yaml"), address, str(tmp_path / "py")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["budget", "6"]


def test_a_cluster_whose_token_this_machine_lacks_is_a_one_line_error_that_says_where_it_goes(head, tmp_path):
    address, env = head
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    env = {**env, "HOME": str(tmp_path)}  # another user: no ~/.ray/auth_token
    out = subprocess.run([str(BIN / "optsearch"), "evolve", str(tmp_path / "tiny.yaml"), "--address", address,
                          "--run-dir", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"optsearch: error: cannot join the Ray cluster at '{address}'") and \
        "RAY_AUTH_TOKEN" in last, out.stderr[-3000:]
