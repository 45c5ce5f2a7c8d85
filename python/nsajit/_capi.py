"""ctypes binding of the stable C API of libnsajit.so (runtime/include/nsajit/nsajit.h).

Everything here works without a GPU except creating a :class:`Context` and
launching kernels. The structs mirror the C header field by field; the ABI
version of the loaded library is checked when it is loaded.

Finding the library (first match wins):

1. ``$NSAJIT_LIBRARY``: the path of ``libnsajit.so`` (an error if it does not exist);
2. ``libnsajit.so`` next to this package (``nsajit/libnsajit.so`` or ``nsajit/lib/``);
3. the build directory of the repository holding this package:
   ``$NSAJIT_BUILD_DIR/lib`` if set, else ``<repo>/build/lib``;
4. the system loader (``ldconfig`` paths, ``LD_LIBRARY_PATH``).

Errors: every non-OK status becomes an :class:`NsajitError` subclass carrying
``.status`` (a :class:`Status`), ``.status_name`` (``"NSAJIT_ERROR_NO_DEVICE"``)
and ``.message`` (``nsajit_last_error()``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import importlib.util
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, Optional, Union

__all__ = [
    "ABI_VERSION",
    "Status",
    "DType",
    "Branch",
    "KernelPass",
    "NsajitConfig",
    "NsajitTensor",
    "CacheCounters",
    "KernelInfo",
    "NsajitError",
    "InvalidArgumentError",
    "UnsupportedError",
    "NoDeviceError",
    "DriverError",
    "CompileError",
    "NsajitOutOfMemoryError",
    "InternalError",
    "FunctionUnavailableError",
    "BackwardUnavailableError",
    "LibraryNotFoundError",
    "Library",
    "Context",
    "library",
    "load_library",
    "library_path",
    "version",
    "compiler_version",
    "abi_version",
    "status_string",
    "last_error",
    "config_init",
    "make_config",
    "compile_ptx",
    "kernel_query",
    "cache_stats",
    "cache_info",
    "set_log_callback",
    "has_backward",
    "has_select_topn",
    "has_compress",
]

#: NSAJIT_ABI_VERSION of nsajit.h this binding was written against.
ABI_VERSION = 1


class Status(enum.IntEnum):
    OK = 0
    ERROR_INVALID_ARGUMENT = 1
    ERROR_UNSUPPORTED = 2
    ERROR_NO_DEVICE = 3
    ERROR_DRIVER_ERROR = 4
    ERROR_COMPILE_ERROR = 5
    ERROR_OUT_OF_MEMORY = 6
    ERROR_INTERNAL = 7


class DType(enum.IntEnum):
    BF16 = 0
    FP16 = 1


class Branch(enum.IntEnum):
    COMPRESSED = 0
    SELECTED = 1
    WINDOW = 2


class KernelPass(enum.IntEnum):
    """nsajit_kernel_pass: a branch's forward kernel, one of its three backward kernels, or
    (compressed branch only) the fused block scoring + top-n kernel or a pooling kernel of
    the compression (``POOL``: the pooling, ``POOL_BWD``: its dx, ``POOL_DW``: the weighted
    pooling's weight gradient). The pooling kernels pool one tensor: set head_dim_qk =
    head_dim_v = its head dim. A config cannot ask for weighted pooling (the C API picks it
    from the weights pointer), so compile/query of these passes give the mean-pooling
    kernels, and ``POOL_DW`` (weighted only) cannot be compiled from a config."""
    FORWARD = 0
    BACKWARD_PRE = 1
    BACKWARD_DQ = 2
    BACKWARD_DKDV = 3
    TOPN = 4
    POOL = 5
    POOL_BWD = 6
    POOL_DW = 7
    COMBINE = 8


# ---- structs (exactly as in nsajit.h) -------------------------------------------


class NsajitConfig(ctypes.Structure):
    """``nsajit_config``: fill with :func:`config_init` (paper defaults), then change fields."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("dtype", ctypes.c_int32),
        ("head_dim_qk", ctypes.c_int32),
        ("head_dim_v", ctypes.c_int32),
        ("num_kv_heads", ctypes.c_int32),
        ("group", ctypes.c_int32),
        ("cmp_block", ctypes.c_int32),
        ("cmp_stride", ctypes.c_int32),
        ("slc_block", ctypes.c_int32),
        ("slc_count", ctypes.c_int32),
        ("window", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("tile_warps", ctypes.c_int32),
        ("tile_tokens", ctypes.c_int32),
        ("tile_kv_chunk", ctypes.c_int32),
        ("slc_initial", ctypes.c_int32),
        ("slc_local", ctypes.c_int32),
    ]

    def as_dict(self) -> Dict[str, Union[int, float]]:
        return {name: getattr(self, name) for name, _ in self._fields_}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"NsajitConfig({fields})"


class NsajitTensor(ctypes.Structure):
    """``nsajit_tensor``: device pointer and strides (in elements) of [batch, token, head, dim]."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("stride_batch", ctypes.c_int64),
        ("stride_token", ctypes.c_int64),
        ("stride_head", ctypes.c_int64),
    ]

    def __repr__(self) -> str:
        return (f"NsajitTensor(data={self.data:#x}, stride_batch={self.stride_batch}, "
                f"stride_token={self.stride_token}, stride_head={self.stride_head})")


class CacheCounters(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kernel_hits", ctypes.c_uint64),
        ("ptx_memory_hits", ctypes.c_uint64),
        ("disk_hits", ctypes.c_uint64),
        ("compiles", ctypes.c_uint64),
        ("modules_loaded", ctypes.c_uint64),
        ("disk_writes", ctypes.c_uint64),
        ("disk_rejects", ctypes.c_uint64),
        ("machine_code_disk_hits", ctypes.c_uint64),
        ("ptxas_runs", ctypes.c_uint64),
    ]

    def as_dict(self) -> Dict[str, int]:
        return {name: getattr(self, name) for name, _ in self._fields_ if name != "struct_size"}


class TuneBackwardResult(ctypes.Structure):
    """nsajit_tune_backward_result: the fastest dK/dV split length (0: automatic), the
    automatic one's splits, their whole-backward times."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("split_tokens", ctypes.c_int32),
        ("splits", ctypes.c_int32),
        ("best_ms", ctypes.c_double),
        ("default_splits", ctypes.c_int32),
        ("default_ms", ctypes.c_double),
        ("candidates", ctypes.c_int32),
        ("failed", ctypes.c_int32),
        ("database", ctypes.c_char * 512),
    ]

    def as_dict(self) -> Dict[str, Union[int, float, str]]:
        out = {name: getattr(self, name) for name, _ in self._fields_ if name != "struct_size"}
        out["database"] = self.database.decode(errors="replace")
        return out


class TuneResult(ctypes.Structure):
    """nsajit_tune_result: the fastest tile, the default tile, their times."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("tile_warps", ctypes.c_int32),
        ("tile_tokens", ctypes.c_int32),
        ("tile_kv_chunk", ctypes.c_int32),
        ("best_ms", ctypes.c_double),
        ("default_warps", ctypes.c_int32),
        ("default_tokens", ctypes.c_int32),
        ("default_kv_chunk", ctypes.c_int32),
        ("default_ms", ctypes.c_double),
        ("candidates", ctypes.c_int32),
        ("failed", ctypes.c_int32),
        ("database", ctypes.c_char * 512),
    ]

    def as_dict(self) -> Dict[str, Union[int, float, str]]:
        out: Dict[str, Union[int, float, str]] = {}
        for name, _ in self._fields_:
            if name != "struct_size":
                value = getattr(self, name)
                out[name] = value.decode() if isinstance(value, bytes) else value
        return out


class KernelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("arch", ctypes.c_int32),
        ("threads_per_cta", ctypes.c_int32),
        ("shared_memory_bytes", ctypes.c_int32),
        ("tile_warps", ctypes.c_int32),
        ("tile_tokens", ctypes.c_int32),
        ("tile_kv_chunk", ctypes.c_int32),
        ("num_regs", ctypes.c_int32),
        ("local_bytes", ctypes.c_int32),
        ("kernel_name", ctypes.c_char * 64),
        ("spec", ctypes.c_char * 256),
    ]

    def as_dict(self) -> Dict[str, Union[int, str]]:
        out: Dict[str, Union[int, str]] = {}
        for name, _ in self._fields_:
            if name == "struct_size":
                continue
            value = getattr(self, name)
            out[name] = value.decode() if isinstance(value, bytes) else value
        return out


assert ctypes.sizeof(NsajitConfig) == 68, "nsajit_config layout is part of the ABI"
assert ctypes.sizeof(NsajitTensor) == 32, "nsajit_tensor layout is part of the ABI"


# ---- exceptions ------------------------------------------------------------------


class NsajitError(RuntimeError):
    """A call into libnsajit failed.

    Attributes: ``status`` (:class:`Status` or None for errors raised by this
    binding itself), ``status_name`` (e.g. ``"NSAJIT_ERROR_NO_DEVICE"``),
    ``message`` (``nsajit_last_error()``), ``function`` (the C function).
    """

    def __init__(self, message: str, status: Optional[Status] = None, status_name: Optional[str] = None,
                 function: Optional[str] = None):
        self.status = status
        self.status_name = status_name or (f"NSAJIT_{status.name}" if status is not None else None)
        self.message = message
        self.function = function
        prefix = ""
        if function:
            prefix += f"{function}: "
        if self.status_name:
            prefix += f"{self.status_name}: "
        super().__init__(prefix + message)


class InvalidArgumentError(NsajitError, ValueError):
    """NSAJIT_ERROR_INVALID_ARGUMENT: NULL/misaligned pointer, bad stride or size (also a ValueError)."""


class UnsupportedError(NsajitError):
    """NSAJIT_ERROR_UNSUPPORTED: a valid request this build or GPU cannot run (e.g. Dk = 96)."""


class NoDeviceError(NsajitError):
    """NSAJIT_ERROR_NO_DEVICE: no NVIDIA driver (libcuda.so.1) or no CUDA device."""


class DriverError(NsajitError):
    """NSAJIT_ERROR_DRIVER_ERROR: a CUDA driver call failed."""


class CompileError(NsajitError):
    """NSAJIT_ERROR_COMPILE_ERROR: generating or JIT-loading a kernel failed."""


class NsajitOutOfMemoryError(NsajitError, MemoryError):
    """NSAJIT_ERROR_OUT_OF_MEMORY: a host or device allocation failed (also a MemoryError)."""


class InternalError(NsajitError):
    """NSAJIT_ERROR_INTERNAL: a bug in nsajit."""


class FunctionUnavailableError(NsajitError, NotImplementedError):
    """The loaded libnsajit.so lacks an optional entry point (it predates it), e.g.
    ``nsajit_select_topn``. A ``NotImplementedError``."""


class BackwardUnavailableError(FunctionUnavailableError):
    """The loaded libnsajit.so has no backward entry points (it predates them)."""


class LibraryNotFoundError(NsajitError, OSError):
    """libnsajit.so could not be found or loaded."""


_STATUS_EXCEPTIONS = {
    Status.ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    Status.ERROR_UNSUPPORTED: UnsupportedError,
    Status.ERROR_NO_DEVICE: NoDeviceError,
    Status.ERROR_DRIVER_ERROR: DriverError,
    Status.ERROR_COMPILE_ERROR: CompileError,
    Status.ERROR_OUT_OF_MEMORY: NsajitOutOfMemoryError,
    Status.ERROR_INTERNAL: InternalError,
}


def error_for_status(status: int, message: str, function: Optional[str] = None,
                     status_name: Optional[str] = None) -> NsajitError:
    """The exception object for a non-OK status (unknown codes give a plain NsajitError)."""
    try:
        st = Status(status)
    except ValueError:
        return NsajitError(message, None, status_name or f"NSAJIT_STATUS_{status}", function)
    cls = _STATUS_EXCEPTIONS.get(st, NsajitError)
    return cls(message, st, status_name, function)


# ---- the library -------------------------------------------------------------------

_c_tensor_p = ctypes.POINTER(NsajitTensor)
_c_config_p = ctypes.POINTER(NsajitConfig)
_c_int = ctypes.c_int
_c_void_p = ctypes.c_void_p
_status = ctypes.c_int

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
PREPARE_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_double,
                                       ctypes.c_void_p)
TUNE_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_double,
                                    ctypes.c_void_p)

# name -> (restype, argtypes); restype _status gets the error check.
_FUNCTIONS = {
    "nsajit_last_error": (ctypes.c_char_p, []),
    "nsajit_status_string": (ctypes.c_char_p, [_c_int]),
    "nsajit_version": (ctypes.c_char_p, []),
    "nsajit_compiler_version": (ctypes.c_char_p, []),
    "nsajit_abi_version": (ctypes.c_uint32, []),
    "nsajit_set_log_callback": (_status, [LOG_FN, _c_void_p]),
    "nsajit_config_init": (_status, [_c_config_p]),
    "nsajit_context_create": (_status, [ctypes.POINTER(_c_void_p), _c_int]),
    "nsajit_context_destroy": (_status, [_c_void_p]),
    "nsajit_context_set_arch": (_status, [_c_void_p, _c_int]),
    "nsajit_context_set_backward_split": (_status, [_c_void_p, _c_int]),
    "nsajit_context_set_selection_map_limit": (_status, [_c_void_p, ctypes.c_size_t]),
    "nsajit_device_info": (_status, [_c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
    "nsajit_compressed_forward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_tensor_p, _c_tensor_p,
                                            _c_tensor_p, _c_tensor_p, _c_tensor_p, _c_void_p]),
    "nsajit_selected_forward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_tensor_p, _c_tensor_p,
                                          _c_tensor_p, _c_tensor_p, _c_tensor_p, _c_tensor_p, _c_void_p]),
    "nsajit_window_forward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_tensor_p, _c_tensor_p,
                                        _c_tensor_p, _c_tensor_p, _c_tensor_p, _c_void_p]),
    "nsajit_check_indices": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_tensor_p, _c_void_p]),
    "nsajit_compile": (_status, [_c_void_p, _c_config_p, _c_int, ctypes.POINTER(ctypes.c_char_p)]),
    "nsajit_compile_ptx": (_status, [_c_config_p, _c_int, _c_int, ctypes.c_char_p, ctypes.c_size_t,
                                     ctypes.POINTER(ctypes.c_size_t)]),
    "nsajit_kernel_query": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, ctypes.POINTER(KernelInfo)]),
    "nsajit_cache_stats": (_status, [_c_void_p, ctypes.POINTER(CacheCounters)]),
    "nsajit_cache_info": (_status, [ctypes.c_char_p, ctypes.c_size_t]),
}

# Entry points newer than ABI 1's first release: declared only when the library has them.
#   *_backward(ctx, cfg, batch, seq_len, q, k, v, [indices,] o, lse, dout, gate, delta, dq, dk, dv, dgate, stream)
_BACKWARD_FUNCTIONS = {
    "nsajit_compressed_backward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int] + [_c_tensor_p] * 12 +
                                   [_c_void_p]),
    "nsajit_selected_backward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int] + [_c_tensor_p] * 13 +
                                 [_c_void_p]),
    "nsajit_window_backward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int] + [_c_tensor_p] * 12 +
                               [_c_void_p]),
}
_OPTIONAL_FUNCTIONS = dict(_BACKWARD_FUNCTIONS)
_OPTIONAL_FUNCTIONS.update({
    "nsajit_compile2": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, ctypes.POINTER(ctypes.c_char_p)]),
    "nsajit_compile_ptx2": (_status, [_c_config_p, _c_int, _c_int, _c_int, ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_size_t)]),
    "nsajit_kernel_query2": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int, ctypes.POINTER(KernelInfo)]),
    # select_topn(ctx, cfg, batch, seq_len, q, k_cmp, lse_cmp, indices, stream)
    "nsajit_select_topn": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_tensor_p, _c_tensor_p, _c_tensor_p,
                                     _c_tensor_p, _c_void_p]),
    # compress_forward(ctx, cfg, batch, seq_len, dim, x, weights, out, stream)
    "nsajit_compress_forward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int, _c_tensor_p,
                                          ctypes.c_uint64, _c_tensor_p, _c_void_p]),
    # prepare(ctx, cfg, flags, batch, seq_len, progress, user, &kernels)
    "nsajit_prepare": (_status, [_c_void_p, _c_config_p, ctypes.c_uint, _c_int, _c_int, PREPARE_PROGRESS_FN,
                                 _c_void_p, ctypes.POINTER(_c_int)]),
    # tune(ctx, cfg, branch, batch, seq_len, repeats, progress, user, result)
    "nsajit_tune": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int, _c_int, TUNE_PROGRESS_FN, _c_void_p,
                              ctypes.POINTER(TuneResult)]),
    # tune_backward(ctx, cfg, branch, batch, seq_len, repeats, progress, user, result)
    "nsajit_tune_backward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int, _c_int, TUNE_PROGRESS_FN,
                                       _c_void_p, ctypes.POINTER(TuneBackwardResult)]),
    # tuned_backward_split(ctx, cfg, branch, batch, seq_len, &split_tokens, &tuned)
    "nsajit_tuned_backward_split": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int,
                                              ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(_c_int)]),
    # tuned_tile(ctx, cfg, branch, batch, seq_len, &warps, &tokens, &kv_chunk, &tuned)
    "nsajit_tuned_tile": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int] +
                          [ctypes.POINTER(ctypes.c_int32)] * 3 + [ctypes.POINTER(_c_int)]),
    # gated_combine(ctx, cfg, batch, seq_len, o_cmp, g_cmp, o_slc, g_slc, o_swa, g_swa, out, stream)
    "nsajit_gated_combine": (_status, [_c_void_p, _c_config_p, _c_int, _c_int] + [_c_tensor_p] * 7 + [_c_void_p]),
    # compress_backward(ctx, cfg, batch, seq_len, dim, x, weights, dout, dx, dweights, stream)
    "nsajit_compress_backward": (_status, [_c_void_p, _c_config_p, _c_int, _c_int, _c_int, _c_tensor_p,
                                           ctypes.c_uint64, _c_tensor_p, _c_tensor_p, ctypes.c_uint64,
                                           _c_void_p]),
})

# What a library that lacks an optional entry point predates (for the error message), and
# the exception class: the backward kernels' entry points give BackwardUnavailableError.
_UNAVAILABLE = {
    "nsajit_select_topn": ("the fused top-n kernel", FunctionUnavailableError),
    "nsajit_compress_forward": ("the compression (pooling) kernels", FunctionUnavailableError),
    "nsajit_compress_backward": ("the compression (pooling) kernels", FunctionUnavailableError),
    "nsajit_gated_combine": ("the gated combination kernel", FunctionUnavailableError),
    "nsajit_tune": ("the autotuner", FunctionUnavailableError),
    "nsajit_prepare": ("nsajit_prepare", FunctionUnavailableError),
    "nsajit_tuned_tile": ("the autotuner", FunctionUnavailableError),
    "nsajit_tune_backward": ("the backward's tuner", FunctionUnavailableError),
    "nsajit_tuned_backward_split": ("the backward's tuner", FunctionUnavailableError),
}


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


def _candidate_paths():
    """Where libnsajit.so is looked for, in order (after $NSAJIT_LIBRARY)."""
    pkg = _package_dir()
    yield pkg / "libnsajit.so"
    yield pkg / "lib" / "libnsajit.so"
    build_dir = os.environ.get("NSAJIT_BUILD_DIR")
    if build_dir:
        yield Path(build_dir) / "lib" / "libnsajit.so"
    # python/nsajit/_capi.py -> <repo>/build/lib/libnsajit.so
    yield pkg.parent.parent / "build" / "lib" / "libnsajit.so"


def library_path() -> Optional[str]:
    """The path libnsajit.so would be loaded from (None: left to the system loader)."""
    env = os.environ.get("NSAJIT_LIBRARY")
    if env:
        return env
    for p in _candidate_paths():
        if p.is_file():
            return str(p)
    return None


class Library:
    """The loaded libnsajit.so with argtypes/restypes declared and statuses checked.

    Status-returning functions are available as attributes without the
    ``nsajit_`` prefix (``lib.compressed_forward(...)``) and raise
    :class:`NsajitError` subclasses on failure.
    """

    def __init__(self, path: Optional[str] = None):
        explicit = path is not None or bool(os.environ.get("NSAJIT_LIBRARY"))
        path = path if path is not None else library_path()
        if path is None:
            found = ctypes.util.find_library("nsajit")
            path = found or "libnsajit.so"
        if explicit and os.sep in path and not os.path.exists(path):
            raise LibraryNotFoundError(
                f"{path} does not exist (set NSAJIT_LIBRARY to the path of libnsajit.so, e.g. "
                f"<repo>/build/lib/libnsajit.so)")
        try:
            self._dll = ctypes.CDLL(path)
        except OSError as e:
            tried = [str(p) for p in _candidate_paths()]
            raise LibraryNotFoundError(
                f"cannot load libnsajit.so from {path!r} ({e}). Looked at $NSAJIT_LIBRARY, {', '.join(tried)} "
                f"and the system loader; build it (ninja -C build nsajit) or set NSAJIT_LIBRARY") from None
        self.path = path
        self._raw: Dict[str, ctypes._CFuncPtr] = {}
        for name, (restype, argtypes) in _FUNCTIONS.items():
            fn = getattr(self._dll, name)  # AttributeError: not a libnsajit.so
            fn.restype = restype
            fn.argtypes = argtypes
            self._raw[name] = fn
        self._backward = {}
        for name, (restype, argtypes) in _OPTIONAL_FUNCTIONS.items():
            try:
                fn = getattr(self._dll, name)
            except AttributeError:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            self._raw[name] = fn
            if name in _BACKWARD_FUNCTIONS:
                self._backward[name] = fn
        abi = self._raw["nsajit_abi_version"]()
        if abi != ABI_VERSION:
            raise NsajitError(
                f"{path} has ABI version {abi}, this Python binding was written for ABI {ABI_VERSION}: "
                f"use the nsajit Python package from the same source tree as the library")
        self._log_callback = None  # keeps the ctypes callback alive

    # -- helpers --

    def last_error(self) -> str:
        return self._raw["nsajit_last_error"]().decode("utf-8", "replace")

    def status_string(self, status: int) -> str:
        return self._raw["nsajit_status_string"](int(status)).decode()

    def has(self, name: str) -> bool:
        return name in self._raw or ("nsajit_" + name) in self._raw

    def has_backward(self, branch: Optional[str] = None) -> bool:
        """Whether the backward entry points (of ``branch``: compressed/selected/window) exist."""
        if branch is None:
            return len(self._backward) == len(_BACKWARD_FUNCTIONS)
        return f"nsajit_{branch}_backward" in self._backward

    def call(self, name: str, *args):
        """Calls nsajit_<name>; a non-OK status raises the matching NsajitError subclass."""
        cname = name if name.startswith("nsajit_") else "nsajit_" + name
        fn = self._raw.get(cname)
        if fn is None:
            if cname in _OPTIONAL_FUNCTIONS:
                what, cls = _UNAVAILABLE.get(cname, ("the backward kernels", BackwardUnavailableError))
                raise cls(
                    f"{self.path} has no {cname}: this libnsajit.so predates {what}. Rebuild it "
                    f"from a source tree whose nsajit.h declares {cname} (ninja -C build nsajit)",
                    function=cname)
            raise AttributeError(f"libnsajit has no function {cname}")
        status = fn(*args)
        if status != 0:
            raise error_for_status(status, self.last_error(), cname, self.status_string(status))
        return status

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        cname = "nsajit_" + name
        if cname in _FUNCTIONS and _FUNCTIONS[cname][0] is not _status:
            return self._raw[cname]
        if cname in _FUNCTIONS or cname in _OPTIONAL_FUNCTIONS:
            return lambda *args: self.call(cname, *args)
        raise AttributeError(f"libnsajit has no function {cname}")

    def __repr__(self) -> str:
        return f"<nsajit.Library {self.path}>"


_lock = threading.Lock()
_library: Optional[Library] = None


def bundled_ptxas() -> Optional[str]:
    """Triton's ptxas (every PyTorch install with CUDA has one), when nsajit would find no other.

    nsajit assembles its kernels with ptxas in parallel processes; without one they go through the
    driver's JIT one at a time (a new configuration compiles in about 3 s instead of 1 s).
    """
    home = os.environ.get("CUDA_HOME")
    if (home and os.access(os.path.join(home, "bin", "ptxas"), os.X_OK)) or \
            os.access("/usr/local/cuda/bin/ptxas", os.X_OK) or shutil.which("ptxas"):
        return None  # the library finds it itself
    try:
        spec = importlib.util.find_spec("triton")  # locates, does not import
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        p = os.path.join(root, "backends", "nvidia", "bin", "ptxas")
        if os.access(p, os.X_OK):
            return p
    return None


def load_library(path: Optional[str] = None) -> Library:
    """Loads (once) and returns libnsajit.so. ``path`` overrides the search on first load."""
    global _library
    with _lock:
        if _library is None:
            if "NSAJIT_PTXAS" not in os.environ:  # read by the library on its first kernel
                found = bundled_ptxas()
                if found:
                    os.environ["NSAJIT_PTXAS"] = found
            _library = Library(path)
        elif path is not None and os.path.realpath(path) != os.path.realpath(_library.path):
            raise NsajitError(f"libnsajit is already loaded from {_library.path}; cannot also load {path}")
        return _library


def library() -> Library:
    """The process-wide :class:`Library` (loaded on first use)."""
    lib = _library
    return lib if lib is not None else load_library()


# ---- Pythonic wrappers ---------------------------------------------------------------


def version() -> str:
    """nsajit_version(): the library version, e.g. "0.1.0"."""
    return library().version().decode()


def compiler_version() -> str:
    return library().compiler_version().decode()


def abi_version() -> int:
    return int(library().abi_version())


def status_string(status: int) -> str:
    return library().status_string(status)


def last_error() -> str:
    return library().last_error()


def has_backward(branch: Optional[str] = None) -> bool:
    return library().has_backward(branch)


def has_select_topn() -> bool:
    """Whether the loaded library has nsajit_select_topn (the fused block scoring + top-n)."""
    return library().has("select_topn")


def has_gated_combine() -> bool:
    """Whether the loaded library has nsajit_gated_combine (the fused gated sum of the branches)."""
    return library().has("gated_combine")


def has_compress() -> bool:
    """Whether the loaded library has nsajit_compress_forward and nsajit_compress_backward
    (the pooling kernels of the compression)."""
    lib = library()
    return lib.has("compress_forward") and lib.has("compress_backward")


def config_init() -> NsajitConfig:
    """A config holding the paper's defaults (nsajit_config_init)."""
    cfg = NsajitConfig()
    library().call("config_init", ctypes.byref(cfg))
    return cfg


def make_config(**fields) -> NsajitConfig:
    """config_init() with fields changed, e.g. ``make_config(group=4, head_dim_qk=192)``."""
    cfg = config_init()
    names = {n for n, _ in NsajitConfig._fields_}
    for key, value in fields.items():
        if key not in names or key == "struct_size":
            raise TypeError(f"nsajit_config has no settable field {key!r}; fields: {sorted(names - {'struct_size'})}")
        if value is None:
            continue
        setattr(cfg, key, value)
    return cfg


def _branch(branch: Union[Branch, str, int]) -> int:
    if isinstance(branch, str):
        try:
            return int(Branch[branch.upper()])
        except KeyError:
            raise ValueError(f"branch {branch!r} is unknown; allowed: compressed, selected, window") from None
    return int(branch)


def _pass(kernel_pass: Union[KernelPass, str, int]) -> int:
    if isinstance(kernel_pass, str):
        try:
            return int(KernelPass[kernel_pass.upper()])
        except KeyError:
            raise ValueError(f"kernel pass {kernel_pass!r} is unknown; allowed: "
                             f"{', '.join(p.name.lower() for p in KernelPass)}") from None
    return int(kernel_pass)


def compile_ptx(config: NsajitConfig, branch: Union[Branch, str, int], arch: int = 90,
                kernel_pass: Union[KernelPass, str, int] = KernelPass.FORWARD) -> str:
    """PTX of a branch's kernel (forward unless ``kernel_pass`` names a backward kernel, or
    with branch ``"compressed"``: ``"topn"``, the fused block scoring + top-n, or ``"pool"`` /
    ``"pool_bwd"``, the mean-pooling compression and its backward) for arch 80 (sm_80) or 90
    (sm_90a); needs no GPU."""
    lib = library()
    size = ctypes.c_size_t(0)
    p = _pass(kernel_pass)
    if p == KernelPass.FORWARD:
        args = (ctypes.byref(config), _branch(branch), int(arch))
        name = "compile_ptx"
    else:
        args = (ctypes.byref(config), _branch(branch), p, int(arch))
        name = "compile_ptx2"
    lib.call(name, *args, None, 0, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value + 1)
    lib.call(name, *args, buf, size.value + 1, None)
    return buf.value.decode()


def kernel_query(config: NsajitConfig, branch: Union[Branch, str, int], arch: int = 90,
                 context: Optional["Context"] = None,
                 kernel_pass: Union[KernelPass, str, int] = KernelPass.FORWARD) -> Dict[str, Union[int, str]]:
    """Resources of a branch's kernel. Without a context it validates the config on the CPU
    (raising UnsupportedError for an unsupported one); registers are then -1."""
    info = KernelInfo()
    info.struct_size = ctypes.sizeof(KernelInfo)
    handle = context.handle if context is not None else None
    p = _pass(kernel_pass)
    if p == KernelPass.FORWARD:
        library().call("kernel_query", handle, ctypes.byref(config), _branch(branch), int(arch), ctypes.byref(info))
    else:
        library().call("kernel_query2", handle, ctypes.byref(config), _branch(branch), p, int(arch),
                       ctypes.byref(info))
    return info.as_dict()


def cache_stats(context: Optional["Context"] = None) -> Dict[str, int]:
    stats = CacheCounters()
    stats.struct_size = ctypes.sizeof(CacheCounters)
    library().call("cache_stats", context.handle if context is not None else None, ctypes.byref(stats))
    return stats.as_dict()


def _string_out(call: Callable[[ctypes.Array, int], None]) -> str:
    size = 1024
    while True:
        buf = ctypes.create_string_buffer(size)
        try:
            call(buf, size)
            return buf.value.decode("utf-8", "replace")
        except InvalidArgumentError:
            if size >= 1 << 20:
                raise
            size *= 8


def cache_info() -> str:
    """"disk cache: /home/u/.cache/nsajit (read-write)" or why it is off."""
    lib = library()
    return _string_out(lambda buf, n: lib.call("cache_info", buf, n))


def set_log_callback(fn: Optional[Callable[[int, str], None]]) -> None:
    """Routes nsajit's log messages (level 1 = warning, 2 = info) to ``fn(level, message)``;
    None restores the default (warnings to stderr)."""
    lib = library()
    if fn is None:
        lib.call("set_log_callback", ctypes.cast(None, LOG_FN), None)
        lib._log_callback = None
        return

    def trampoline(level, message, _user):
        try:
            fn(int(level), message.decode("utf-8", "replace") if message else "")
        except Exception:  # never let a Python exception cross into C
            pass

    cb = LOG_FN(trampoline)
    lib.call("set_log_callback", cb, None)
    lib._log_callback = cb


def _progress_reporter(progress, label: str, shown: Callable[[float], str]):
    """The C callback behind the progress= argument of Context.prepare / Context.tune:
    ``progress`` a callable ``(done, total, name, value)``, or True for a progress line on
    stderr (``shown(value)`` after the name)."""

    def report(done, total, name, value, _user):
        text = name.decode() if name else ""
        try:
            if callable(progress):
                progress(int(done), int(total), text, float(value))
            elif progress:
                bar = "#" * (24 * done // max(1, total))
                print(f"\r  {label} [{bar:.<24}] {done}/{total} {text[:60]:<40} {shown(value)}",
                      end="\n" if done == total else "", file=sys.stderr, flush=True)
        except Exception:  # never let a Python exception cross into C
            pass

    return report


class Context:
    """An nsajit context: one GPU (its primary CUDA context, or the thread's current one
    if it belongs to that device) plus the kernels loaded into it.

    ``Context(device)`` raises :class:`NoDeviceError` without a driver or GPU.
    """

    def __init__(self, device: int = -1):
        self._lib = library()
        handle = ctypes.c_void_p()
        self._lib.call("context_create", ctypes.byref(handle), int(device))
        self.handle = handle
        self.device = device

    def close(self) -> None:
        handle, self.handle = getattr(self, "handle", None), None
        if handle is not None and handle.value:
            self._lib.call("context_destroy", handle)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _require(self) -> ctypes.c_void_p:
        if self.handle is None:
            raise NsajitError("this nsajit Context is closed")
        return self.handle

    def set_arch(self, arch: int) -> None:
        """Forces sm_80 (80) or sm_90a (90) kernels; 0 restores the automatic choice."""
        self._lib.call("context_set_arch", self._require(), int(arch))

    def set_backward_split(self, tokens: int) -> None:
        """The most query tokens one dK/dV CTA walks before the walk is split
        (deterministically) over more CTAs; 0 restores the automatic choice."""
        self._lib.call("context_set_backward_split", self._require(), int(tokens))

    def set_selection_map_limit(self, nbytes: int) -> None:
        """The largest selection map (bytes) the selected branch's backward may
        use to visit only the tokens that selected each block; 0 scans the index
        lists instead. Default 512 MiB."""
        if nbytes < 0:
            raise ValueError(f"nbytes = {nbytes}: pass 0 (no map) or a positive byte count")
        self._lib.call("context_set_selection_map_limit", self._require(), int(nbytes))

    def device_info(self) -> str:
        h = self._require()
        return _string_out(lambda buf, n: self._lib.call("device_info", h, buf, n))

    def compile(self, config: NsajitConfig, branch: Union[Branch, str, int],
                kernel_pass: Union[KernelPass, str, int] = KernelPass.FORWARD) -> str:
        """Generates (or finds in the caches) and loads a branch's kernel; returns its PTX."""
        ptx = ctypes.c_char_p()
        p = _pass(kernel_pass)
        if p == KernelPass.FORWARD:
            self._lib.call("compile", self._require(), ctypes.byref(config), _branch(branch), ctypes.byref(ptx))
        else:
            self._lib.call("compile2", self._require(), ctypes.byref(config), _branch(branch), p,
                           ctypes.byref(ptx))
        return ptx.value.decode() if ptx.value else ""

    def kernel_query(self, config: NsajitConfig, branch: Union[Branch, str, int],
                     kernel_pass: Union[KernelPass, str, int] = KernelPass.FORWARD) -> Dict[str, Union[int, str]]:
        self._require()
        return kernel_query(config, branch, 0, self, kernel_pass)

    def cache_stats(self) -> Dict[str, int]:
        self._require()
        return cache_stats(self)

    def prepare(self, config: NsajitConfig, flags: int = 15, batch: int = 1, seq_len: int = 0,
                progress: Union[bool, Callable[[int, int, str, float], None]] = False) -> int:
        """Compiles (or loads from the caches) and loads every kernel of ``config`` in parallel:
        ``flags`` 1 forward, 2 backward, 4 the fused top-n, 8 the mean pooling kernels (15: all
        of these), 16 the weighted pooling kernels.
        With ``seq_len`` > 0 the forward kernels get the tuned tiles for batch x seq_len.
        ``progress``: True prints a progress line to stderr, or a callable
        ``(done, total, kernel, seconds)``. Returns the number of kernels."""
        h = self._require()

        cb = PREPARE_PROGRESS_FN(_progress_reporter(progress, "preparing", lambda s: ""))
        n = ctypes.c_int()
        self._lib.call("prepare", h, ctypes.byref(config), int(flags), int(batch), int(seq_len), cb, None,
                       ctypes.byref(n))
        return n.value

    def tune(self, config: NsajitConfig, branch: Union[Branch, str, int], batch: int = 1, seq_len: int = 16384,
             repeats: int = 20, progress: Union[bool, Callable[[int, int, str, float], None]] = True
             ) -> Dict[str, Union[int, float, str]]:
        """Times every legal tile of the forward kernel of ``branch`` for ``config`` on this GPU
        (random inputs of batch x seq_len tokens, median of ``repeats`` launches; the selected
        branch: the sum over random and local block indices) and records
        the fastest in the per-GPU tuning database, which later launches with default tiles
        use. ``progress``: True prints a progress line to stderr, or a callable
        ``(done, total, tile, ms)`` (ms < 0: the tile failed). Returns the result as a dict."""
        h = self._require()

        cb = TUNE_PROGRESS_FN(_progress_reporter(progress, "tuning",
                                                 lambda ms: f"{ms:9.4f} ms" if ms >= 0 else "   failed"))
        result = TuneResult()
        result.struct_size = ctypes.sizeof(TuneResult)
        self._lib.call("tune", h, ctypes.byref(config), _branch(branch), int(batch), int(seq_len), int(repeats), cb,
                       None, ctypes.byref(result))
        return result.as_dict()

    def tune_backward(self, config: NsajitConfig, branch: Union[Branch, str, int], batch: int = 1,
                      seq_len: int = 16384, repeats: int = 20,
                      progress: Union[bool, Callable[[int, int, str, float], None]] = True
                      ) -> Dict[str, Union[int, float, str]]:
        """Times the whole backward of ``branch`` over the dK/dV split lengths (nsajit's
        automatic one, 256 .. 32768 tokens, no split; those giving distinct splits at this
        size) on random inputs of batch x seq_len tokens (the selected branch: random plus local
        block indices), median of ``repeats`` launches, and
        records the fastest in the per-GPU tuning database, which later backward launches use
        unless the context's split is set. ``progress`` as for :meth:`tune`. Returns the
        result as a dict (split_tokens 0: the automatic length won)."""
        h = self._require()
        cb = TUNE_PROGRESS_FN(_progress_reporter(progress, "tuning the backward",
                                                 lambda ms: f"{ms:9.4f} ms" if ms >= 0 else "   failed"))
        result = TuneBackwardResult()
        result.struct_size = ctypes.sizeof(TuneBackwardResult)
        self._lib.call("tune_backward", h, ctypes.byref(config), _branch(branch), int(batch), int(seq_len),
                       int(repeats), cb, None, ctypes.byref(result))
        return result.as_dict()

    def tuned_backward_split(self, config: NsajitConfig, branch: Union[Branch, str, int], batch: int = 1,
                             seq_len: int = 16384) -> Dict[str, int]:
        """The dK/dV split length the tuning database gives a backward at batch x seq_len:
        ``{"split_tokens", "tuned"}`` (tuned = 0: none recorded; split_tokens 0: automatic)."""
        split, tuned = ctypes.c_int32(), ctypes.c_int()
        self._lib.call("tuned_backward_split", self._require(), ctypes.byref(config), _branch(branch), int(batch),
                       int(seq_len), ctypes.byref(split), ctypes.byref(tuned))
        return {"split_tokens": split.value, "tuned": tuned.value}

    def tuned_tile(self, config: NsajitConfig, branch: Union[Branch, str, int], batch: int = 1,
                   seq_len: int = 16384) -> Dict[str, int]:
        """The tile a forward launch with default tiles uses at batch x seq_len:
        ``{"warps", "tokens", "kv_chunk", "tuned"}`` (tuned = 1 when it comes from the database)."""
        w, t, c = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
        tuned = ctypes.c_int()
        self._lib.call("tuned_tile", self._require(), ctypes.byref(config), _branch(branch), int(batch), int(seq_len),
                       ctypes.byref(w), ctypes.byref(t), ctypes.byref(c), ctypes.byref(tuned))
        return {"warps": w.value, "tokens": t.value, "kv_chunk": c.value, "tuned": tuned.value}

    def __repr__(self) -> str:
        state = "closed" if self.handle is None else f"device {self.device}"
        return f"<nsajit.Context {state}>"
