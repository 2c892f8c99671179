"""`run_jobs`: results in job order, and a cache that a later call reads instead of training again."""
import dataclasses
import pickle

from optsearch.evaluators import EvalJob, run_jobs
from optsearch.evaluators.pool import job_key

ADAMW = """
def adamw(w, g, lr, step, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    update = bias_correct(m, 0.9, step) / (sqrt(bias_correct(v, 0.999, step)) + 1e-08)
    return update * lr, m, v
"""


def test_a_cached_result_is_read_back_and_a_new_job_is_trained(tmp_path):
    job = EvalJob(ADAMW, ("quadratic/small",), (0,), (1.0,))
    first = run_jobs([job], cache=tmp_path)[0]
    assert first.status == "ok" and (tmp_path / f"{job_key(job)}.pkl").exists()
    # Mark the stored result: a second call must return it as stored, not train again.
    marked = dataclasses.replace(first, fitness=123.0)
    (tmp_path / f"{job_key(job)}.pkl").write_bytes(pickle.dumps(marked))
    other = dataclasses.replace(job, seeds=(1,))
    seen = []
    again, fresh = run_jobs([job, other], cache=tmp_path, done=lambda i, r: seen.append(i))
    assert again.fitness == 123.0
    assert fresh.status == "ok" and fresh.fitness != 123.0 and sorted(seen) == [0, 1]
    assert job_key(other) != job_key(job)
