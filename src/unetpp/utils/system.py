"""How much memory this run may use: the machine's (or container's) available RAM, or the GPU's free memory."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError

logger = logging.getLogger(__name__)

CPU_SHARE = 0.75  # of the available RAM: the rest is left to the system, other processes and page cache
GPU_SHARE = 0.9  # of the GPU's free memory


def available_ram_bytes() -> int:
    """RAM that can be allocated now without swapping: ``MemAvailable``, capped by a cgroup (container) limit
    and by the process's address-space limit (``ulimit -v``).

    Falls back to psutil where ``/proc/meminfo`` is missing (not Linux).

    Raises:
        ConfigError: neither source can be read (pass a budget explicitly).
    """
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except ImportError as e:
            raise ConfigError("cannot read the available memory on this system; pass --memory-gb") from e
    rooms = [r for r in (available, _cgroup_room(), _address_space_room()) if r is not None]
    return min(rooms)


def _cgroup_room() -> int | None:
    """cgroup v2 ``memory.max - memory.current`` of this process's group, if a limit is set."""
    try:
        group = Path("/proc/self/cgroup").read_text().strip().split("::")[-1]
        base = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def _address_space_room() -> int | None:
    """Room left under this process's address-space limit (``ulimit -v``, RLIMIT_AS), if one is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
        return soft
    except (ImportError, OSError, ValueError):
        return None


def memory_budget_bytes(device: str = "cpu") -> float:
    """The default budget: most of the available RAM on CPU, most of the free memory of the current GPU."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but no CUDA GPU is available; use device='cpu'")
        free, _ = torch.cuda.mem_get_info()
        return GPU_SHARE * free
    return CPU_SHARE * available_ram_bytes()
