"""The process's memory allocator, set so that a measured step times the hardware, not the allocator.

glibc gives every block above its mmap threshold (32 MiB at most) a mapping of its own and unmaps it when the
block is freed, and hands the heap's free top back to the kernel beyond a trim threshold; the next step's
allocations then touch new pages, each a page fault and a zeroing, and on a VM whose memory balloon reports
freed memory to the host (virtio-balloon free page reporting) a fault on the host too. That cost is glibc's
heuristics and the hypervisor's, not the device's, and it is not steady (the README has what
benchmarks/bench_fresh_pages.py measured on the VM chipfit is developed on). jemalloc
and tcmalloc keep freed memory for the next allocation (PyTorch's CPU performance tuning guide recommends either);
`retain_freed_memory` sets glibc to do the same: no block gets a mapping of its own (M_MMAP_MAX 0) and the heap is
trimmed only when over 2 GiB of it is free (M_TRIM_THRESHOLD, an int). A process's setting lasts until it exits.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

# mallopt(3) parameters (malloc.h) and the values set.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest value mallopt's int takes
PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")
VIRTIO_BALLOON_DEVICE_ID = 5
VIRTIO_BALLOON_F_REPORTING = 5  # feature bit: the guest reports its free pages to the host

_retained = False


def retain_freed_memory() -> str:
    """Keep freed memory in this process for its next allocations (glibc; a preloaded jemalloc, tcmalloc or
    mimalloc already does, and other platforms are left as they are), and say which allocator the process runs."""
    global _retained
    if not _retained and not _preloaded() and _glibc():
        libc = ctypes.CDLL("libc.so.6")
        _retained = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return describe()


def describe() -> str:
    """The allocator this process runs and how it hands freed memory back, for a run's environment."""
    preloaded, glibc = _preloaded(), _glibc()
    if preloaded:
        what = f"{preloaded} (LD_PRELOAD), freed memory kept"
    elif glibc is None:
        what = f"the system allocator of {platform.system() or 'this platform'}"
    elif _retained:
        what = f"glibc {glibc}, freed memory kept (M_MMAP_MAX 0, M_TRIM_THRESHOLD {TRIM_THRESHOLD_BYTES:,} bytes)"
    else:
        what = f"glibc {glibc} defaults (blocks above the mmap threshold unmapped when freed, the heap trimmed)"
    return what + ("; the VM reports freed memory to its host" if reports_free_pages() else "")


def reports_free_pages(devices: Path = Path("/sys/bus/virtio/devices")) -> bool:
    """Whether a virtio memory balloon here reports freed guest pages to the host (its feature bit 5): memory
    handed back to the kernel then costs a host fault when it is touched again."""
    for dev in devices.glob("*") if devices.is_dir() else ():
        try:
            if int((dev / "device").read_text(), 16) != VIRTIO_BALLOON_DEVICE_ID:
                continue
            features = (dev / "features").read_text().strip()
        except (OSError, ValueError):
            continue
        if len(features) > VIRTIO_BALLOON_F_REPORTING and features[VIRTIO_BALLOON_F_REPORTING] == "1":
            return True
    return False


def _glibc() -> str | None:
    if platform.system() != "Linux":
        return None
    lib, version = platform.libc_ver()
    return version if lib == "glibc" else None


def _preloaded() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    return next((name for name in PRELOADED if name in preload), "")


def device_allocator(device, keep_freed_memory: bool = False) -> str:
    """The allocator a run on LocalDevice `device` measures under: on a CPU this process's (set to keep freed
    memory first with `keep_freed_memory`); on a GPU PyTorch's caching allocator, which keeps freed device memory
    for the next allocation whatever glibc does."""
    if device.kind == "cpu":
        return retain_freed_memory() if keep_freed_memory else describe()
    return f"PyTorch's {device.kind.upper()} caching allocator (freed device memory kept for the next allocation)"


def refuse_keep_freed_memory(device) -> None:
    """--keep-freed-memory given for a GPU alone: one sentence saying why it does not apply."""
    from ..errors import ChipfitError

    if device.kind != "cpu":
        raise ChipfitError(f"--keep-freed-memory sets glibc's allocator for CPU measurements, but {device.id}'s memory "
                           "comes from PyTorch's caching allocator, which keeps freed memory already; drop the option.")
