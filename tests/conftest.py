import os

# One thread per test process: on a busy 2-core machine torch's default thread pool makes the
# Atari runs ~20x slower (oversubscription). Set before torch (and numpy's BLAS) load.
for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[variable] = "1"

import signal  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# A shell starts background jobs with SIGINT ignored, and Python then never installs its
# KeyboardInterrupt handler; ignored signals also pass to every child. The tests of Ctrl-C
# (train.py, sweeps) need it delivered, so restore Python's handler (children then start with
# the default action).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

torch.set_num_threads(1)

# Property tests repeat exactly (derandomized: the cases come from a fixed seed) and have no
# per-case deadline: a busy 2-core machine is slow now and then, never wrong.
settings.register_profile("repeatable", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("repeatable")


@pytest.fixture
def no_tf32():
    """Full float32 matmuls and convolutions on CUDA for the duration of a test: cuDNN may otherwise
    run a float32 convolution in TF32 (10-bit mantissa, errors near 1e-3), far above the 1e-4 the
    comparisons of exact paths allow."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped when no GPU is present")


# Tests that start a local Ray (``ray.init`` or a train/sweep command on Ray): under ``make
# test``'s two pytest-xdist workers they share one worker, so two Ray sessions never contend for
# the same 2 cores (and a module's shared session stays in the worker that made it).
def starts_ray(item) -> bool:
    return item.path.name == "test_distributed.py" or "ray_sweep_dir" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if starts_ray(item):
            item.add_marker(pytest.mark.xdist_group("ray"))
