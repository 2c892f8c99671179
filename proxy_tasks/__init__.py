"""Proxy tasks: small training problems with offline data, functional so copies train under vmap."""
from optsearch.proxy_tasks.adamw import AdamWRun, train_adamw
from optsearch.proxy_tasks.base import SIZES, Budget, ProxyTask, Task
from optsearch.proxy_tasks.registry import TASKS, TRAINING_TASKS, TaskInfo, get_task

__all__ = ["SIZES", "TASKS", "TRAINING_TASKS", "AdamWRun", "Budget", "ProxyTask", "Task", "TaskInfo", "get_task", "train_adamw"]
