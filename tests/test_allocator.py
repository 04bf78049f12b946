import subprocess
import sys

import pytest

# Scales a batch of 512 Atari stacks to float (a 58 MB tensor, freed at once) 50 times, as every
# learner step does, and prints the minor page faults of the last 10.
SCALE_BATCHES = """
import resource, sys, torch
from rl_coordconv.agents.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
batch = torch.zeros(512, 4, 84, 84, dtype=torch.uint8)
for _ in range(40):  # the heap settles
    batch.float()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch.float()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_PER_BATCH = 512 * 4 * 84 * 84 * 4 // 4096  # 14,112 pages of 4 KB


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", SCALE_BATCHES, mode], capture_output=True, text=True, check=True)
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_batch_sized_tensors_are_reused_without_page_faults():
    # By default glibc maps and unmaps each 58 MB tensor, so every one faults in anew; kept for
    # reuse, the later ones fault in nothing.
    assert page_faults("default") > 10 * PAGES_PER_BATCH * 0.9
    assert page_faults("keep") < PAGES_PER_BATCH * 0.1
