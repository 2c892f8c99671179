"""Evaluators: train a program on proxy tasks, score it against tuned AdamW, run jobs (inline, Ray)."""
from optsearch.evaluators.evaluate import EvalResult, TaskScore, evaluate, resolve_task
from optsearch.evaluators.executor import (EvalJob, Executor, ExecutorLost, InlineExecutor, JobResult, SubspaceOptions,
                                        run_job)
from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS, aggregate, relative_fitness, task_metric
from optsearch.evaluators.pool import run_jobs
from optsearch.evaluators.ray_executor import RayExecutor  # imports ray only when one is made
from optsearch.evaluators.train import TrainResult, train

__all__ = ["DEFAULT_LR_MULTIPLIERS", "EvalJob", "EvalResult", "Executor", "ExecutorLost", "InlineExecutor",
           "JobResult", "RayExecutor", "SubspaceOptions", "TaskScore", "TrainResult", "aggregate", "evaluate",
           "relative_fitness", "resolve_task", "run_job", "run_jobs", "task_metric", "train"]
