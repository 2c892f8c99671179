"""Ray's processes seen from outside Ray (no Ray started here): the authentication setting a
driver starts with, and the watchdog that ends what a driver leaves behind."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from optsearch.evaluators import ray_process
from optsearch.evaluators.ray_process import set_ray_environment


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No Ray setting in the environment, and a HOME without a token."""
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_a_local_instance_keeps_token_authentication_on_and_loopback(clean_env):
    set_ray_environment(None)
    assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


def test_a_users_explicit_mode_is_kept(clean_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    set_ray_environment(None)
    set_ray_environment("127.0.0.1:6379")
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


@pytest.mark.parametrize("where", ["file", "env", "path"])
def test_the_token_of_this_machine_goes_to_a_cluster_on_this_machine_only(clean_env, monkeypatch, where):
    if where == "file":
        (clean_env / ".ray").mkdir()
        (clean_env / ".ray" / "auth_token").write_text("abc\n")
    elif where == "env":
        monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    else:
        (clean_env / "token").write_text("abc")
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(clean_env / "token"))
    set_ray_environment("10.1.2.3:6379")  # elsewhere: this machine's token may not be that cluster's
    assert "RAY_AUTH_MODE" not in os.environ
    for address in ("auto", "127.0.0.1:6379", "localhost:6379"):
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        set_ray_environment(address)
        assert os.environ.get("RAY_AUTH_MODE") == "token", address


def test_without_a_token_a_cluster_address_sends_none(clean_env):
    (clean_env / ".ray").mkdir()
    (clean_env / ".ray" / "auth_token").write_text("  \n")  # empty: Ray ignores it too
    set_ray_environment("127.0.0.1:6379")
    assert "RAY_AUTH_MODE" not in os.environ


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the watchdog reads /proc (Linux)")
def test_the_watchdog_ends_what_a_killed_driver_left_behind():
    # A "driver" starts the watchdog and a long-lived child, then dies without a word.
    driver = (
        "import os, subprocess, time\n"
        "from optsearch.evaluators.ray_process import start_watchdog\n"
        "start_watchdog()\n"
        "child = subprocess.Popen(['sleep', '120'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(1.5)\n"  # the watchdog notes the child (it looks every 0.5 s)
        "os._exit(9)\n"
    )
    out = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=60)
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), "the orphan outlived its driver"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_watchdog_source_is_self_contained():
    # It runs as `python -c <its source>`: only the standard library, imported inside.
    import inspect
    source = inspect.getsource(ray_process._watch)
    assert "optsearch" not in source and "ray." not in source
