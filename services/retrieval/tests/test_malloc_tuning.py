"""With glibc's thresholds raised, large blocks freed by a worker thread are reused, not faulted
in again page by page (malloc_tuning.py); each run is a fresh process, as malloc's state is
per process."""

import subprocess
import sys

import pytest

# A batch's worth of large temporaries (53 MiB in blocks of 3-20 MiB), made and freed 30 times
# on a worker thread, as the embedder's thread does; prints the page faults of a second pass.
SCRIPT = """
import resource, sys, threading
import numpy as np
from retrieval_service.malloc_tuning import reuse_freed_memory
if sys.argv[1] == "tuned" and not reuse_freed_memory():
    sys.exit("not applied")
def batches():
    for _ in range(30):
        blocks = [np.ones((n << 20) // 4, dtype=np.float32) for n in (6, 15, 9, 20, 3)]
        del blocks
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    worker = threading.Thread(target=batches)
    worker.start()
    worker.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_TOUCHED = 30 * (53 << 20) // 4096


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_large_temporaries_reuse_freed_memory():
    tuned, default = _faults("tuned"), _faults("default")
    assert tuned < PAGES_TOUCHED // 100, tuned
    # What it saves: glibc's defaults fault most of those pages in again.
    assert default > 10 * tuned, (default, tuned)
