"""Project-wide test settings: hypothesis runs are deterministic and free of wall-clock deadlines."""
import torch
from hypothesis import HealthCheck, settings

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
