"""pytest setup: import nsajit from this source tree and find libnsajit.so in the build.

libnsajit.so: $NSAJIT_LIBRARY if set, else $NSAJIT_BUILD_DIR/lib/libnsajit.so, else
<repo>/build/lib/libnsajit.so. The disk cache is off unless NSAJIT_CACHE_DIR is set,
so the tests leave the user's cache alone.
"""

import os
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parent

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))


def _find_library():
    env = os.environ.get("NSAJIT_LIBRARY")
    if env:
        return env
    build = Path(os.environ.get("NSAJIT_BUILD_DIR", REPO / "build"))
    candidate = build / "lib" / "libnsajit.so"
    return str(candidate) if candidate.is_file() else None


LIBRARY = _find_library()
if LIBRARY:
    os.environ["NSAJIT_LIBRARY"] = LIBRARY
os.environ.setdefault("NSAJIT_CACHE_DIR", "off")


def pytest_report_header(config):
    import torch

    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "no CUDA device (GPU tests skip)"
    return [f"nsajit library: {LIBRARY or 'NOT FOUND (set NSAJIT_LIBRARY or build <repo>/build/lib)'}",
            f"torch {torch.__version__}, {gpu}"]
