"""Project-wide test settings: deterministic hypothesis runs without deadlines, one torch thread,
and the Ray fixtures (a local instance per session, a simulated multi-node cluster per module)."""
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from optsearch.evaluators.ray_process import set_ray_environment

settings.register_profile(
    "optsearch",
    derandomize=True,  # the same examples on every run and machine: failures reproduce
    deadline=None,  # torch's first call of a kernel can be slow; time is not under test
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("optsearch")

# One torch thread: the models in these tests are tiny, and on a small (or busy) machine a
# second thread makes their ops several times slower instead of faster.
torch.set_num_threads(1)


# Read by Ray when it is imported: every Ray address this process makes is loopback, so the
# simulated cluster never binds or dials the machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray workers run at nice 15 by default and starve beside any busy process; the executor sets
# this too for the instances it starts, the fixtures here start their own.
os.environ.setdefault("RAY_worker_niceness", "0")
# Ray fixes its token-authentication mode when it is imported, and the processes it starts read
# theirs from the environment: set it here, before anything imports ray, as the executor does
# for a local instance (token mode; Ray writes ~/.ray/auth_token on the first start).
set_ray_environment(None)


LOOPBACK = "127.0.0.1"
_connected = {"to": None}  # what this process is connected to: "local", "cluster" or None


@pytest.fixture(scope="session")
def _ray_session():
    """Shuts down whatever Ray connection is left at the end of the session."""
    ray = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()
    _connected["to"] = None


@pytest.fixture
def ray_local(_ray_session):
    """A local Ray instance (4 logical CPUs, loopback only), started once and shared."""
    ray = _ray_session
    if _connected["to"] != "local":
        if ray.is_initialized():
            ray.shutdown()
        ray.init(num_cpus=4, include_dashboard=False, _node_ip_address=LOOPBACK, log_to_driver=False,
                 logging_level="WARNING")
        _connected["to"] = "local"
    return ray


@pytest.fixture(scope="module")
def ray_cluster(_ray_session):
    """A head (no CPUs, so no workers) and two 1-CPU worker nodes on loopback, this process connected."""
    from ray.cluster_utils import Cluster

    ray = _ray_session
    if ray.is_initialized():
        ray.shutdown()
    _connected["to"] = "cluster"
    node_args = dict(node_ip_address=LOOPBACK, include_dashboard=False)
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, **node_args))
    nodes = [cluster.add_node(num_cpus=1, **node_args) for _ in range(2)]
    ray.init(address=cluster.address, _node_ip_address=LOOPBACK, log_to_driver=False, logging_level="WARNING")
    cluster.wait_for_nodes()
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()
    _connected["to"] = None

