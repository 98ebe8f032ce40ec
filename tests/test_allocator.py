"""The allocator a measurement runs under: freed memory kept (glibc set by mallopt), and the VM's balloon."""

import platform
import subprocess
import sys

import pytest

from chipfit.measure import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Faults of five 64 MiB allocations, each filled and freed: before retain_freed_memory and after it.
_FAULTS = """
import resource, sys, torch
from chipfit.measure.allocator import describe, retain_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(16 * 2**20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = describe()
default = faults()
kept = retain_freed_memory()
faults()  # the heap grows once to hold the block
print(default, faults(), first, kept, sep="|")
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True,
                         env={"PATH": "", "LD_PRELOAD": ""}).stdout.strip().split("|")
    default, retained, first, kept = int(out[0]), int(out[1]), out[2], out[3]
    pages = 5 * 64 * 2**20 // 4096
    assert default >= pages  # glibc unmaps each 64 MiB block when it is freed: every page faults again
    assert retained <= pages // 5  # reused: at most one of the five blocks touched anew
    assert first.startswith(f"glibc {platform.libc_ver()[1]} defaults (blocks above the mmap threshold unmapped")
    assert kept.startswith(f"glibc {platform.libc_ver()[1]}, freed memory kept (M_MMAP_MAX 0, "
                           "M_TRIM_THRESHOLD 2,147,483,647 bytes)")


def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    monkeypatch.setattr(allocator, "reports_free_pages", lambda: False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: pytest.fail("mallopt called under jemalloc"))
    assert allocator.retain_freed_memory() == "jemalloc (LD_PRELOAD), freed memory kept"


def _virtio(root, name, device_id, features):
    d = root / name
    d.mkdir()
    (d / "device").write_text(f"0x{device_id:04x}\n")
    (d / "features").write_text(features + "\n")


def test_free_page_reporting_is_the_balloons_feature_bit_5(tmp_path):
    # Firecracker's balloon as this VM has it: stats queue, deflate on OOM, free page reporting (bits 1, 2, 5).
    _virtio(tmp_path, "virtio0", 5, "0110010100" + "0" * 54)
    _virtio(tmp_path, "virtio1", 2, "0010011001" + "0" * 54)  # a block device, whatever its bits
    assert allocator.reports_free_pages(tmp_path)
    (tmp_path / "virtio0" / "features").write_text("0110000100" + "0" * 54)  # reporting off
    assert not allocator.reports_free_pages(tmp_path)
    _virtio(tmp_path, "virtio2", 1, "0000010000")  # bit 5 of a network device is not reporting
    assert not allocator.reports_free_pages(tmp_path)
    assert not allocator.reports_free_pages(tmp_path / "absent")
