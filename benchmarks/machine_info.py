"""What machine a benchmark ran on, for its JSON (shared by the scripts in this folder)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def loadavg() -> float | None:
    """The 1-minute load average (None where the OS does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine() -> dict:
    """Platform, CPU model and count, and the GPU if there is one."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
