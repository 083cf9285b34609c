"""The loader's allocator bound (loader/allocator.py), observed in a fresh interpreter: after a
big buffer is freed, glibc alone serves the next 2 MiB buffer from its heap (where freed space
stays with the process); with the bound it maps it (given back on free)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.model_scenarios import PROJECT_DIR

PROBE = """
import contextlib, ctypes, io, sys
from loader import allocator, __main__
if sys.argv[1] == "bound":
    assert allocator.bound_footprint()
elif sys.argv[1] == "mips-loader":
    sys.argv = ["mips-loader", "--version"]
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
        __main__.main()
buffer = bytearray(8 << 20)
del buffer  # glibc raises its mmap threshold to this size, unless it is fixed
probe = bytearray(2 << 20)
address = ctypes.addressof(ctypes.c_char.from_buffer(probe))
for line in open("/proc/self/maps"):
    span, *_, name = line.split()
    low, high = (int(part, 16) for part in span.split("-"))
    if low <= address < high:
        print("heap" if name == "[heap]" else "mapped")
"""


def where_a_big_buffer_lives(mode: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True, env={**os.environ, **env},
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_big_buffers_are_mapped_and_given_back_once_bound():
    assert where_a_big_buffer_lives("glibc's default") == "heap"
    assert where_a_big_buffer_lives("bound") == "mapped"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_line_binds_it():
    """`mips-loader` (loader/__main__.py) binds it before it runs any command."""
    assert where_a_big_buffer_lives("mips-loader") == "mapped"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_it_can_be_switched_off():
    assert where_a_big_buffer_lives("mips-loader", MIPS_ALLOCATOR_BOUND="off") == "heap"
