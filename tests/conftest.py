"""Shared fixtures. Tests that need ../shared skip where it is absent (an outside user), except
under CI (HANDVOX_REQUIRE_SHARED=1), where its absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# As the command line does for its jobs beside other processes (handvox.cli.main): pytest's
# workers and subprocesses share the cores, where OpenMP threads that sleep instead of spinning
# keep small batched solves fast. Set before any test imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _scan_cache(tmp_path_factory):
    """Training runs share segmentation scans through a cache folder (handvox.train.data.
    scan_cache_dir); the tests' runs use one of their own, not the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HANDVOX_SCAN_CACHE", str(tmp_path_factory.mktemp("scan-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference-data folder ``../shared`` beside the checkout."""
    if not (SHARED / "data").is_dir():
        if os.environ.get("HANDVOX_REQUIRE_SHARED") == "1":
            pytest.fail(f"{SHARED} is absent but HANDVOX_REQUIRE_SHARED=1")
        pytest.skip(f"{SHARED} is absent: reference-data tests skipped")
    return SHARED


@pytest.fixture(scope="session")
def recording_suffix() -> str:
    """The RealSense recording extension of the installed pyrealsense2 (the realsense extra):
    librealsense 2.57 on records ROS2 ``.db3``, earlier versions ROS1 ``.bag``. Skips where it is
    absent or cannot load (its wheel links the system's libusb-1.0: a fresh machine's `make
    test` without it), except under CI with libusb installed (HANDVOX_REQUIRE_REALSENSE=1,
    .ci/run)."""
    if os.environ.get("HANDVOX_REQUIRE_REALSENSE") == "1":
        import pyrealsense2 as rs
    else:
        try:
            import pyrealsense2 as rs
        except ImportError as e:  # not installed, or libusb-1.0 missing
            pytest.skip(f"pyrealsense2 (handvox[realsense]) does not load: {e}")
    version = tuple(int(x) for x in getattr(rs, "__version__", "2.0.0").split(".")[:2])
    return ".db3" if version >= (2, 57) else ".bag"


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny tensors on a shared 2-core machine run faster so
    (waking a second thread costs more than the op). Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder of :func:`tests.tiny.tiny_config` (NYU's 14 joints, no refinement,
    untrained); shared by the whole session, so tests must not write into it."""
    from tests.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"))
