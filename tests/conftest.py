"""Project-wide test settings: hypothesis runs are deterministic and free of wall-clock deadlines."""
from hypothesis import HealthCheck, settings

settings.register_profile(
    "optsearch",
    derandomize=True,  # the same examples on every run and machine: failures reproduce
    deadline=None,  # torch's first call of a kernel can be slow; time is not under test
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("optsearch")
