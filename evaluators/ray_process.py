"""Ray's processes on this machine, seen from outside Ray: the environment they start with
(loopback, token authentication), whether one still listens, and a watchdog that ends a local
instance's processes when its driver ends. Stdlib only: nothing here imports ray."""
from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys


def _watch(driver: int, every: float = 0.5, grace: float = 1.0) -> None:
    """Watchdog body (stdlib only: a separate process runs this function's source): note the
    driver's descendant processes every `every` s until stdin closes (the driver ended, however it
    ended), then end those still alive: SIGTERM, and SIGKILL `grace` s later. Linux (/proc)."""
    import os
    import select
    import signal
    import sys
    import time

    def table() -> dict[int, tuple[int, str]]:   # pid -> (parent, start time)
        out = {}
        for p in os.listdir("/proc"):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    out[int(p)] = (int(fields[1]), fields[19])
            except (OSError, ValueError, IndexError):
                pass
        return out

    def alive(noted: dict[int, str]) -> list[int]:
        now = table()
        return [pid for pid, start in noted.items() if pid in now and now[pid][1] == start]

    noted: dict[int, str] = {}
    while not select.select([sys.stdin], [], [], every)[0] or sys.stdin.buffer.read1(4096):
        now, family, grew = table(), {driver}, True
        while grew:  # the driver's children, their children, ...
            joining = {pid for pid, (parent, _) in now.items() if parent in family and pid not in family}
            family |= joining
            noted.update((pid, now[pid][1]) for pid in joining if pid != os.getpid())
            grew = bool(joining)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive(noted):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while alive(noted) and time.monotonic() < deadline:
            time.sleep(0.05)


def start_watchdog() -> subprocess.Popen:
    """A small process that ends what is left of the local Ray instance when this process ends,
    however it ends: after a SIGKILL, or a GCS lost first, Ray's agents otherwise stay a minute."""
    script = inspect.getsource(_watch) + f"\n_watch({os.getpid()})\n"
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def set_ray_environment(address: str | None) -> None:
    """Settings Ray reads from the environment when it is imported, for the processes it starts too."""
    if address is None:
        # Keeps a local instance on loopback (no port open to the network), which
        # `_node_ip_address` alone does not.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # A local instance has token authentication on (Ray makes a token in ~/.ray/auth_token
        # if there is none); saying so explicitly keeps it on and silences the warning Ray
        # prints at every start while the mode is unset.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    elif "RAY_AUTH_MODE" not in os.environ and _on_this_machine(address) and _auth_token_available():
        # `ray start --head` turns token authentication on where it finds a token, but Ray sends
        # none to an explicit address unless told to (and warns at `auto`). A cluster on this
        # machine was started with the token this machine has: send it. A remote cluster's token
        # is the user's to give (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN): this one may not be it.
        os.environ["RAY_AUTH_MODE"] = "token"


def _on_this_machine(address: str) -> bool:
    host = address.rpartition(":")[0] if "://" not in address else ""
    return address == "auto" or host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def _auth_token_available() -> bool:
    """Whether Ray would find an authentication token here: `RAY_AUTH_TOKEN`, the file
    `RAY_AUTH_TOKEN_PATH` names, or `~/.ray/auth_token`, as Ray looks for them."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    try:
        with open(path, encoding="utf-8") as f:
            return bool(f.read().strip())
    except OSError:
        return False


def token_hint(e: BaseException) -> str:
    """What to do when `ray.init` failed because the cluster wants a token this process did not send."""
    said = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
    if "InvalidAuthToken" not in said and "AuthenticationError" not in said:
        return ""
    return ("; the cluster asks for its authentication token: print it on the head with `ray get-auth-token`, "
            "then run here with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the token>")


def listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port (a refused or timed-out connect: no)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
