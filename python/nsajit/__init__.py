"""nsajit: Python bindings (ctypes, no compiled extension) of libnsajit.so, the JIT kernel
generator for DeepSeek's Native Sparse Attention.

- ``nsajit`` (this module): the C API through ctypes (:mod:`nsajit._capi`): versions,
  configs, contexts, PTX, error classes. Needs no torch and no GPU.
- ``nsajit.reference``: a plain PyTorch reference of every NSA step (differentiable).
- ``nsajit.torch``: autograd functions running the branches through nsajit on CUDA
  tensors, and ``nsa_attention``.

``nsajit.reference`` and ``nsajit.torch`` import torch; they load on first access.
"""

from __future__ import annotations

import importlib

from ._capi import (  # noqa: F401
    ABI_VERSION,
    BackwardUnavailableError,
    Branch,
    CompileError,
    Context,
    DType,
    DriverError,
    FunctionUnavailableError,
    InternalError,
    InvalidArgumentError,
    KernelInfo,
    KernelPass,
    LibraryNotFoundError,
    NoDeviceError,
    NsajitConfig,
    NsajitError,
    NsajitOutOfMemoryError,
    NsajitTensor,
    Status,
    UnsupportedError,
    abi_version,
    cache_info,
    cache_stats,
    compile_ptx,
    compiler_version,
    config_init,
    has_backward,
    has_compress,
    has_gated_combine,
    has_select_topn,
    kernel_query,
    last_error,
    library,
    library_path,
    load_library,
    make_config,
    set_log_callback,
    status_string,
    version,
)

__version__ = "0.1.0"

_LAZY = ("reference", "torch")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'nsajit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
