"""NSA branches on CUDA tensors through libnsajit, with autograd.

Functions (``q [B, T, HQ, Dk]``, keys/values ``[B, Tkv, H, D]``, gates ``[B, T, HQ]``):

- :func:`compressed_attention`, :func:`selected_attention`, :func:`window_attention`:
  one branch, optionally gated (``out = gate * branch(q, k, v)``), returning ``out``
  (and its ``lse`` with ``return_lse=True``). They wrap the autograd functions
  :class:`CompressedAttention`, :class:`SelectedAttention`, :class:`WindowAttention`
  (forward: ``nsajit_*_forward``; backward: ``nsajit_*_backward``, which also gives the
  gate's gradient).
- :func:`select_topn`: the fused block scoring + top-n selection (``nsajit_select_topn``):
  block indices from q, the compressed keys and the compressed branch's lse.
- :func:`compress`: NSA's compression phi (mean or learned weighted pooling of keys or
  values over blocks of l tokens with stride d) on the pooling kernels
  (``nsajit_compress_forward`` / ``nsajit_compress_backward``), autograd function
  :class:`Compress`.
- :func:`nsa_attention`: the whole NSA layer, same signature as
  :func:`nsajit.reference.nsa_attention` (plus ``compression``, ``selection``...).
  Everything runs on nsajit kernels: the compression of k/v (``compression='kernel'``,
  the default; ``'reference'`` keeps it in PyTorch), the fused top-n, the three branches
  forward and backward, the gates' gradients.

Rules checked before anything touches a GPU, in this order, each raising an error
that names the argument (so they also work, and are tested, on CPU tensors):

1. dtypes: q, k, v of every branch bf16 or fp16, all equal (``TypeError``); gates and
   pooling weights any floating dtype; ``indices`` int32 without ``requires_grad``;
2. shapes (``ValueError`` naming the tensor and the expected shape);
3. layout: the innermost dimension must be contiguous (stride 1), else ``ValueError``
   (call ``.contiguous()`` yourself; nsajit does not copy silently there). Other
   strides are passed to the kernels as they are; a tensor whose data is not 16-byte
   aligned or whose outer strides are not multiples of 8 elements (what the kernels
   need) IS copied with ``.contiguous()``. Gates and pooling weights are converted to
   contiguous float32 (the kernels' type for them); the incoming gradient in backward is
   made contiguous if it does not meet the rules above.
4. gates in [0, 1]: one ``torch.aminmax`` reduction per gate, which synchronises
   with the GPU (``check_gate_range=False`` skips it). NaN fails too;
5. the configuration (head dims, GQA group, block sizes...) through
   ``nsajit_kernel_query`` without a context (``nsajit.UnsupportedError``; for
   :func:`compress` the head dim of x first, then ``l``/``d`` by the pooling kernels' rules);
6. every tensor on the same CUDA device (``ValueError: ... must be a CUDA tensor``).

Launches run on the current CUDA stream of the tensors' device; one nsajit context
per device is created on first use and cached (:func:`context`).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import threading
from typing import Dict, Optional, Sequence, Tuple

import torch

from . import _capi
from . import reference as _ref

__all__ = [
    "CompressedAttention",
    "SelectedAttention",
    "WindowAttention",
    "compressed_attention",
    "selected_attention",
    "window_attention",
    "select_topn",
    "Compress",
    "compress",
    "nsa_attention",
    "context",
]

Tensor = torch.Tensor

_DTYPES = {torch.bfloat16: _capi.DType.BF16, torch.float16: _capi.DType.FP16}

# ---- contexts -----------------------------------------------------------------------

_contexts: Dict[int, _capi.Context] = {}
_contexts_lock = threading.Lock()


@atexit.register
def _close_contexts() -> None:
    """Destroy the cached contexts while the CUDA driver is still up (not in interpreter teardown)."""
    with _contexts_lock:
        for ctx in _contexts.values():
            try:
                ctx.close()
            except Exception:
                pass
        _contexts.clear()


def context(device=None) -> _capi.Context:
    """The cached nsajit context of a CUDA device (created on first use)."""
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"nsajit contexts live on CUDA devices, got {dev}")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    ctx = _contexts.get(index)
    if ctx is not None:
        return ctx
    with _contexts_lock:
        ctx = _contexts.get(index)
        if ctx is None:
            with torch.cuda.device(index):
                torch.cuda.init()
                # nsajit binds to the thread's current context if it belongs to this
                # device (torch's primary context), else retains the primary context.
                ctx = _capi.Context(index)
            _contexts[index] = ctx
        return ctx


def _stream(device: torch.device) -> ctypes.c_void_p:
    return ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream or None)


# ---- validation (CPU-only, before any GPU work) -------------------------------------------


def _shape_str(names: Sequence[str], sizes: Sequence[Optional[int]]) -> str:
    parts = [f"{n}={s}" if s is not None else n for n, s in zip(names, sizes)]
    return "[" + ", ".join(parts) + "]"


def _check_is_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _check_dtypes(named: Sequence[Tuple[str, Tensor]]) -> torch.dtype:
    first_name, first = named[0]
    for name, t in named:
        _check_is_tensor(name, t)
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name} has dtype {t.dtype}; nsajit kernels take torch.bfloat16 or torch.float16 "
                            f"(q, k and v all the same)")
    for name, t in named[1:]:
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}: q, k and v of "
                            f"every branch must share one dtype")
    return first.dtype


def _check_shape(name: str, t: Tensor, names: Sequence[str], sizes: Sequence[Optional[int]]) -> None:
    ok = t.dim() == len(names) and all(s is None or t.shape[i] == s for i, s in enumerate(sizes))
    if not ok:
        raise ValueError(f"{name} has shape {list(t.shape)}, expected {_shape_str(names, sizes)}")


def _check_inner(name: str, t: Tensor) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name}: the last dimension must be contiguous (stride 1), got strides "
                         f"{list(t.stride())}; pass {name}.contiguous()")


def _check_gate(name: str, g: Tensor, B: int, T: int, HQ: int) -> None:
    _check_is_tensor(name, g)
    if not g.dtype.is_floating_point:
        raise TypeError(f"{name} has dtype {g.dtype}; gates must be floating point (float32, bf16, fp16, ...)")
    _check_shape(name, g, ("B", "T", "HQ"), (B, T, HQ))


def _check_gate_range(name: str, g: Tensor) -> None:
    """One reduction (and a GPU sync) per gate: every value in [0, 1], no NaN."""
    if g.numel() == 0:
        return
    lo, hi = torch.aminmax(g.detach())
    lo, hi = float(lo), float(hi)
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(f"{name} has values outside [0, 1] (min {lo}, max {hi}); gates are sigmoid outputs "
                         f"in [0, 1] (pass check_gate_range=False to skip this check)")


def _check_indices(indices: Tensor, B: int, T: int, H: int) -> None:
    _check_is_tensor("indices", indices)
    if indices.dtype != torch.int32:
        raise TypeError(f"indices has dtype {indices.dtype}; it must be torch.int32 [B, T, H, n]")
    if indices.requires_grad:
        raise ValueError("indices requires grad; block indices are discrete: pass indices.detach()")
    _check_shape("indices", indices, ("B", "T", "H", "n"), (B, T, H, None))
    if indices.shape[-1] < 1:
        raise ValueError("indices has n = 0 blocks per query; n must be >= 1")
    _check_inner("indices", indices)


def _check_devices(named: Sequence[Tuple[str, Optional[Tensor]]]) -> torch.device:
    device = None
    first = None
    for name, t in named:
        if t is None:
            continue
        if not t.is_cuda:
            raise ValueError(f"{name} must be a CUDA tensor (got device {t.device}); nsajit runs on NVIDIA "
                             f"GPUs (use nsajit.reference for CPU)")
        if device is None:
            device, first = t.device, name
        elif t.device != device:
            raise ValueError(f"{name} is on {t.device} but {first} is on {device}: all tensors must be on one "
                             f"CUDA device")
    return device


def _needs_copy(t: Tensor, elem_align: int, stride_multiple: int) -> bool:
    if t.numel() == 0:
        return False
    if t.data_ptr() % elem_align != 0:
        return True
    for size, stride in zip(t.shape[:-1], t.stride()[:-1]):
        if size > 1 and (stride < 0 or stride % stride_multiple != 0):
            return True
    return False


def _kernel_layout(t: Tensor) -> Tensor:
    """bf16/fp16 tensors: 16-byte aligned data, outer strides multiples of 8 (else a copy,
    fresh allocations are aligned; .contiguous() alone would keep a misaligned contiguous view)."""
    return t.clone(memory_format=torch.contiguous_format) if _needs_copy(t, 16, 8) else t


def _gate32(g: Optional[Tensor]) -> Optional[Tensor]:
    if g is None:
        return None
    return g.to(torch.float32).contiguous()  # differentiable; dgate flows back through the cast


_BRANCH_NAMES = {_capi.Branch.COMPRESSED: "compressed", _capi.Branch.SELECTED: "selected",
                 _capi.Branch.WINDOW: "window"}


@functools.lru_cache(maxsize=256)
def _config(branch: int, dtype: int, dk: int, dv: int, h: int, g: int, l: int, d: int, l_sel: int, n: int,
            w: int, scale: float, initial: int = 1, local: int = 2,
            kernel_pass: int = int(_capi.KernelPass.FORWARD), tile_tokens: int = 0) -> _capi.NsajitConfig:
    """A validated config (checked on the CPU with nsajit_kernel_query, no context). Cached:
    callers must not modify it."""
    cfg = _capi.make_config(dtype=dtype, head_dim_qk=dk, head_dim_v=dv, num_kv_heads=h, group=g,
                            cmp_block=l or None, cmp_stride=d or None, slc_block=l_sel or None,
                            slc_count=n or None, window=w or None, scale=scale, slc_initial=initial,
                            slc_local=local)
    cfg.tile_tokens = tile_tokens
    # raises UnsupportedError / InvalidArgumentError naming the field
    _capi.kernel_query(cfg, branch, 90, kernel_pass=kernel_pass)
    return cfg


def _make_config(branch: _capi.Branch, dtype: torch.dtype, dk: int, dv: int, h: int, g: int, *, l: int = 0,
                 d: int = 0, l_sel: int = 0, n: int = 0, w: int = 0, scale: Optional[float] = None,
                 tokens_per_cta: Optional[int] = None):
    for name, value in (("l", l), ("d", d), ("l_sel", l_sel), ("n", n), ("w", w)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if branch == _capi.Branch.COMPRESSED and (l < 1 or d < 1 or d > l or l % d != 0):
        raise ValueError(f"bad compression l = {l}, d = {d}: need 1 <= d <= l and l % d == 0")
    if branch == _capi.Branch.WINDOW and w < 1:
        raise ValueError(f"window w = {w} must be >= 1")
    if branch == _capi.Branch.SELECTED and l_sel < 1:
        raise ValueError(f"l_sel = {l_sel} must be >= 1")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale = {scale} must be > 0 (None: 1/sqrt(Dk))")
    if tokens_per_cta is not None and (not isinstance(tokens_per_cta, int) or isinstance(tokens_per_cta, bool)
                                       or not 1 <= tokens_per_cta <= 16):
        raise ValueError(f"tokens_per_cta = {tokens_per_cta!r} must be an int in 1..16 (None: nsajit's choice)")
    return _config(int(branch), int(_DTYPES[dtype]), dk, dv, h, g, l, d, l_sel, n, w,
                   float(scale) if scale is not None else 0.0, tile_tokens=tokens_per_cta or 0)


def _check_ints(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")


def _check_selection(l: int, d: int, l_sel: int, n: int, initial: int, local: int, initial_name: str = "initial",
                     local_name: str = "local") -> None:
    if l < 1 or d < 1 or d > l or l % d != 0:
        raise ValueError(f"bad compression l = {l}, d = {d}: need 1 <= d <= l and l % d == 0")
    if l_sel < 1 or l_sel % d != 0:
        raise ValueError(f"l_sel = {l_sel} must be a positive multiple of d = {d} (eq. 9)")
    if n < 1 or initial < 0 or local < 0 or initial + local > n:
        raise ValueError(f"bad selection n = {n}, {initial_name} = {initial}, {local_name} = {local}: need "
                         f"n >= 1, {initial_name} >= 0, {local_name} >= 0 and {initial_name} + {local_name} <= n")


def _make_topn_config(dtype: torch.dtype, dk: int, h: int, g: int, *, l: int, d: int, l_sel: int, n: int,
                      initial: int, local: int, scale: Optional[float]) -> _capi.NsajitConfig:
    """The validated config of the fused top-n kernel (pass TOPN of the compressed branch)."""
    if scale is not None and not scale > 0:
        raise ValueError(f"scale = {scale} must be > 0 (None: 1/sqrt(Dk))")
    # Dv does not enter the top-n kernel; Dk keeps the config valid (Dv <= Dk).
    return _config(int(_capi.Branch.COMPRESSED), int(_DTYPES[dtype]), dk, dk, h, g, l, d, l_sel, n, 0,
                   float(scale) if scale is not None else 0.0, initial, local, int(_capi.KernelPass.TOPN))


def _require_select_topn() -> None:
    lib = _capi.library()
    if not lib.has("select_topn"):
        lib.call("select_topn")  # raises FunctionUnavailableError naming the library


#: Head dims the pooling kernels take (nsajit_compress_forward's ``dim``).
_POOL_DIMS = (64, 128, 192, 256)


def _check_pool(pool, weight, l, weight_name: str, weight_for_mean_is_error: bool, pooling: bool = True) -> None:
    """pool is 'mean' or 'weighted'; 'weighted' needs a floating weight [l] (when ``pooling``:
    nsa_attention with kc/vc given pools nothing)."""
    if not isinstance(pool, str) or pool not in ("mean", "weighted"):
        raise ValueError(f"pool = {pool!r} is unknown; allowed: 'mean', 'weighted'")
    if not pooling:
        return
    if pool == "weighted":
        if weight is None:
            raise ValueError(f"pool='weighted' needs {weight_name} [l] (one weight per position in a block of "
                             f"l = {l} tokens)")
        _check_is_tensor(weight_name, weight)
        if not weight.dtype.is_floating_point:
            raise TypeError(f"{weight_name} has dtype {weight.dtype}; pooling weights must be floating point "
                            f"(float32, bf16, fp16, ...; the kernels read them as float32)")
        _check_shape(weight_name, weight, ("l",), (l,))
    elif weight is not None and weight_for_mean_is_error:
        raise ValueError(f"{weight_name} is only used with pool='weighted' (pool='mean' averages the l tokens of "
                         f"a block): pass {weight_name}=None or pool='weighted'")


def _check_pool_dim(name: str, dim: int) -> None:
    if dim not in _POOL_DIMS:
        raise _capi.UnsupportedError(f"{name} has head dim {dim}; the compression kernels take dim 64, 128, 192 or "
                                     f"256 (pool other dims with nsajit.reference.compress)",
                                     _capi.Status.ERROR_UNSUPPORTED)


def _make_compress_config(dtype: torch.dtype, dim: int, h: int, l: int, d: int) -> _capi.NsajitConfig:
    """The config of the pooling kernels (nsajit_compress_*): dtype, head_dim_qk = head_dim_v =
    dim, num_kv_heads = H, cmp_block = l, cmp_stride = d (the fields Compress.cpp reads;
    group and scale do not enter the pooling but are part of the kernel's cache key, so they
    stay fixed at 1 and 0: one kernel serves every G). Validated on the CPU (kernel_query2,
    pass POOL) when the library has the compression entry points; without them the caller's
    _require_compress() raises the clear error."""
    if not _capi.has_compress():
        return _capi.make_config(dtype=int(_DTYPES[dtype]), head_dim_qk=dim, head_dim_v=dim, num_kv_heads=max(1, h),
                                 group=1, cmp_block=l, cmp_stride=d, scale=0.0)
    return _config(int(_capi.Branch.COMPRESSED), int(_DTYPES[dtype]), dim, dim, max(1, h), 1, l, d, 0, 0, 0, 0.0,
                   1, 2, int(_capi.KernelPass.POOL))


def _require_compress(hint: str = "") -> None:
    if _capi.has_compress():
        return
    lib = _capi.library()
    missing = "compress_forward" if not lib.has("compress_forward") else "compress_backward"
    try:
        lib.call(missing)  # raises FunctionUnavailableError naming the library
    except _capi.FunctionUnavailableError as e:
        if not hint:
            raise
        raise _capi.FunctionUnavailableError(e.message + hint, function=e.function) from None


def _weight32(w: Optional[Tensor]) -> Optional[Tensor]:
    """Pooling weights as the kernels read them: contiguous float32 (differentiable cast)."""
    if w is None:
        return None
    return w.to(torch.float32).contiguous()


def _no_autocast():
    """PyTorch code of nsa_attention (compression, reference selection) runs in float32
    even inside a caller's torch.autocast region."""
    return torch.autocast(device_type="cuda", enabled=False)


# ---- C views -------------------------------------------------------------------------------


def _view(t: Optional[Tensor]):
    """A pointer to an nsajit_tensor of t ([B, T, heads, dim] or [B, T, heads]); None -> NULL."""
    if t is None:
        return None
    s = t.stride()
    if t.dim() == 4:
        view = _capi.NsajitTensor(t.data_ptr() if t.numel() else 0, s[0], s[1], s[2])
    elif t.dim() == 3:
        view = _capi.NsajitTensor(t.data_ptr() if t.numel() else 0, s[0], s[1], s[2])
    else:
        raise ValueError(f"internal: tensor of shape {list(t.shape)} has no nsajit view")
    return ctypes.pointer(view)


def _forward(branch: _capi.Branch, cfg: _capi.NsajitConfig, q: Tensor, k: Tensor, v: Tensor,
             indices: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    B, T, HQ, _ = q.shape
    Dv = v.shape[-1]
    o = torch.empty(B, T, HQ, Dv, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, T, HQ, dtype=torch.float32, device=q.device)
    lib = _capi.library()
    with torch.cuda.device(q.device):
        ctx = context(q.device)
        args = [ctx.handle, ctypes.byref(cfg), B, T, _view(q), _view(k), _view(v)]
        if branch == _capi.Branch.SELECTED:
            args.append(_view(indices))
        args += [_view(o), _view(lse), _stream(q.device)]
        lib.call(f"{_BRANCH_NAMES[branch]}_forward", *args)
    return o, lse


def _backward(branch: _capi.Branch, cfg: _capi.NsajitConfig, q: Tensor, k: Tensor, v: Tensor,
              indices: Optional[Tensor], o: Tensor, lse: Tensor, dout: Tensor, gate: Optional[Tensor]):
    B, T, HQ, _ = q.shape
    lib = _capi.library()
    name = f"{_BRANCH_NAMES[branch]}_backward"
    if not lib.has_backward(_BRANCH_NAMES[branch]):
        lib.call(name)  # raises BackwardUnavailableError with the library path
    if dout.stride(-1) != 1 or _needs_copy(dout, 16, 8):
        dout = dout.clone(memory_format=torch.contiguous_format)  # documented: any incoming layout
    # Outputs are overwritten, every element exactly once (nsajit.h), so no zero fill.
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    dgate = torch.empty(B, T, HQ, dtype=torch.float32, device=q.device) if gate is not None else None
    delta = torch.empty(B, T, HQ, dtype=torch.float32, device=q.device)
    with torch.cuda.device(q.device):
        ctx = context(q.device)
        args = [ctx.handle, ctypes.byref(cfg), B, T, _view(q), _view(k), _view(v)]
        if branch == _capi.Branch.SELECTED:
            args.append(_view(indices))
        args += [_view(o), _view(lse), _view(dout), _view(gate), _view(delta), _view(dq), _view(dk), _view(dv),
                 _view(dgate), _stream(q.device)]
        lib.call(name, *args)
    return dq, dk, dv, dgate


def _gated(o: Tensor, gate: Optional[Tensor]) -> Tensor:
    if gate is None:
        return o
    # gate is float32: the product is formed in float32 (o converted exactly), without a
    # float32 copy of o first (one pass fewer over [B, T, HQ, Dv]).
    return torch.mul(o, gate.unsqueeze(-1)).to(o.dtype)


def _gated_combine(cfg: _capi.NsajitConfig, outs, gates) -> Tensor:
    """nsajit_gated_combine: round(sum of f32(round(g_c o_c))) in one kernel pass."""
    o_c = outs[0]
    B, T, HQ, Dv = o_c.shape
    out = torch.empty_like(o_c, memory_format=torch.contiguous_format)
    if out.numel() == 0:
        return out
    lib = _capi.library()
    with torch.cuda.device(o_c.device):
        ctx = context(o_c.device)
        args = [ctx.handle, ctypes.byref(cfg), B, T]
        for o, g in zip(outs, gates):
            args += [_view(o), _view(g)]
        args += [_view(out), _stream(o_c.device)]
        lib.call("gated_combine", *args)
    return out


class _GatedBranchSum(torch.autograd.Function):
    """o = the gated sum of the three (ungated) branch outputs by one kernel, with the bits of
    _gated + _BranchSum. Like _BranchSum, the gradient reaches each branch unchanged: each
    branch's backward takes its gate (the outputs reach this function ungated, see
    defer_gate) and returns the gate's gradient, so none flows to the gates from here."""

    @staticmethod
    def forward(ctx, o_c, o_s, o_w, g_c, g_s, g_w, cfg):
        return _gated_combine(cfg, (o_c, o_s, o_w), (g_c, g_s, g_w))

    @staticmethod
    def backward(ctx, dout):
        return dout, dout, dout, None, None, None, None


class _BranchSum(torch.autograd.Function):
    """o = the float32 sum of the three gated branch outputs (each in q's dtype), rounded to
    q's dtype, in two in-place passes. The gradient reaches each branch unchanged and without
    copies: autograd's float32 round trip of a bf16/fp16 gradient is exact."""

    @staticmethod
    def forward(ctx, o_c, o_s, o_w):
        acc = o_c.float()
        acc.add_(o_s)
        acc.add_(o_w)
        return acc.to(o_c.dtype)

    @staticmethod
    def backward(ctx, dout):
        return dout, dout, dout


class _SharedQuery(torch.autograd.Function):
    """q as the three branches read it: one view each, whose gradients meet in one pass of
    nsajit_gated_combine without gates (the float32 sum rounded once) instead of autograd's
    two adds, each a round trip of a [B, T, HQ, Dk] tensor."""

    @staticmethod
    def forward(ctx, q, cfg):
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)  # a branch without a gradient passes None, not zeros
        return q.view_as(q), q.view_as(q), q.view_as(q)

    @staticmethod
    def backward(ctx, *grads):
        present = [g for g in grads if g is not None]
        if len(present) < 3 or any(not g.is_cuda or _needs_copy(g, 16, 8) for g in present):
            total = present[0] if present else None
            for g in present[1:]:
                total = total + g
            return total, None
        return _gated_combine(ctx.cfg, present, (None, None, None)), None


# ---- autograd functions -------------------------------------------------------------------
# They take already-validated tensors (use the wrappers below): q, k, v bf16/fp16 on one
# CUDA device in the kernels' layout, gate None or contiguous float32 [B, T, HQ], and a
# config from _make_config. Outputs: (gate * o or o) in q's dtype, lse float32 (not
# differentiable). defer_gate=True returns o ungated for _GatedBranchSum, which applies
# the gate (the backward is the same: the output's gradient is the gated sum's).


class CompressedAttention(torch.autograd.Function):
    """out, lse = CompressedAttention.apply(q, k_cmp, v_cmp, gate, cfg)."""

    @staticmethod
    def forward(ctx, q, k_cmp, v_cmp, gate, cfg, defer_gate=False):
        o, lse = _forward(_capi.Branch.COMPRESSED, cfg, q, k_cmp, v_cmp, None)
        ctx.save_for_backward(q, k_cmp, v_cmp, gate, o, lse)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(lse)
        return (o if defer_gate else _gated(o, gate)), lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, gate, o, lse = ctx.saved_tensors
        dq, dk, dv, dgate = _backward(_capi.Branch.COMPRESSED, ctx.cfg, q, k, v, None, o, lse, dout, gate)
        return dq, dk, dv, dgate, None, None


class SelectedAttention(torch.autograd.Function):
    """out, lse = SelectedAttention.apply(q, k, v, indices, gate, cfg)."""

    @staticmethod
    def forward(ctx, q, k, v, indices, gate, cfg, defer_gate=False):
        o, lse = _forward(_capi.Branch.SELECTED, cfg, q, k, v, indices)
        ctx.save_for_backward(q, k, v, indices, gate, o, lse)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(lse)
        return (o if defer_gate else _gated(o, gate)), lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, indices, gate, o, lse = ctx.saved_tensors
        dq, dk, dv, dgate = _backward(_capi.Branch.SELECTED, ctx.cfg, q, k, v, indices, o, lse, dout, gate)
        return dq, dk, dv, None, dgate, None, None


class WindowAttention(torch.autograd.Function):
    """out, lse = WindowAttention.apply(q, k, v, gate, cfg)."""

    @staticmethod
    def forward(ctx, q, k, v, gate, cfg, defer_gate=False):
        o, lse = _forward(_capi.Branch.WINDOW, cfg, q, k, v, None)
        ctx.save_for_backward(q, k, v, gate, o, lse)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(lse)
        return (o if defer_gate else _gated(o, gate)), lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, gate, o, lse = ctx.saved_tensors
        dq, dk, dv, dgate = _backward(_capi.Branch.WINDOW, ctx.cfg, q, k, v, None, o, lse, dout, gate)
        return dq, dk, dv, dgate, None, None


def _weights_ptr(w: Optional[Tensor]) -> int:
    return w.data_ptr() if w is not None else 0


def _compress_forward(cfg: _capi.NsajitConfig, x: Tensor, weight: Optional[Tensor]) -> Tensor:
    B, T, H, D = x.shape
    tc = _ref.num_compressed(T, cfg.cmp_block, cfg.cmp_stride)
    out = torch.empty(B, tc, H, D, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out  # Tc == 0 (T < l), or no batch/head: nothing to pool, nothing launched
    lib = _capi.library()
    with torch.cuda.device(x.device):
        ctx = context(x.device)
        lib.call("compress_forward", ctx.handle, ctypes.byref(cfg), B, T, D, _view(x), _weights_ptr(weight),
                 _view(out), _stream(x.device))
    return out


def _compress_backward(cfg: _capi.NsajitConfig, x: Tensor, weight: Optional[Tensor], dout: Tensor):
    B, T, H, D = x.shape
    dw = torch.empty(cfg.cmp_block, dtype=torch.float32, device=x.device) if weight is not None else None
    if dout.numel() == 0:
        # Tc == 0: no block covers any token (or the tensor is empty): zero gradients, no launch.
        if dw is not None:
            dw.zero_()
        return torch.zeros_like(x, memory_format=torch.contiguous_format), dw
    if dout.stride(-1) != 1 or _needs_copy(dout, 16, 8):
        dout = dout.clone(memory_format=torch.contiguous_format)  # any incoming layout
    # Every element of dx (zeros where no block covers a token) and of dw is written (nsajit.h).
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    lib = _capi.library()
    with torch.cuda.device(x.device):
        ctx = context(x.device)
        lib.call("compress_backward", ctx.handle, ctypes.byref(cfg), B, T, D, _view(x), _weights_ptr(weight),
                 _view(dout), _view(dx), _weights_ptr(dw), _stream(x.device))
    return dx, dw


class Compress(torch.autograd.Function):
    """out = Compress.apply(x, weight, cfg): the pooling kernels (nsajit_compress_forward /
    nsajit_compress_backward). Takes validated tensors (use :func:`compress`): x bf16/fp16
    [B, T, H, dim] on a CUDA device in the kernels' layout, weight None (mean pooling) or
    contiguous float32 [l] on the same device, cfg from _make_compress_config. Returns
    [B, Tc, H, dim] in x's dtype; backward gives dx (x's dtype) and dweight (float32)."""

    @staticmethod
    def forward(ctx, x, weight, cfg):
        out = _compress_forward(cfg, x, weight)
        ctx.save_for_backward(x, weight)
        ctx.cfg = cfg
        return out

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        dx, dw = _compress_backward(ctx.cfg, x, weight, dout)
        return (dx if ctx.needs_input_grad[0] else None), (dw if ctx.needs_input_grad[1] else None), None


# ---- user-facing wrappers --------------------------------------------------------------------


def _qkv_shapes(q: Tensor, k: Tensor, v: Tensor, k_name: str, v_name: str, tkv_name: str,
                tkv: Optional[int]) -> Tuple[int, int, int, int, int, int]:
    _check_shape("q", q, ("B", "T", "HQ", "Dk"), (None, None, None, None))
    B, T, HQ, Dk = q.shape
    _check_shape(k_name, k, ("B", tkv_name, "H", "Dk"), (B, tkv, None, Dk))
    H = k.shape[2]
    _check_shape(k_name, k, ("B", tkv_name, "H", "Dk"), (B, tkv, H, Dk))
    if H < 1 or HQ % H != 0:
        raise ValueError(f"q has HQ = {HQ} query heads, not a multiple of the H = {H} KV heads of {k_name}")
    _check_shape(v_name, v, ("B", tkv_name, "H", "Dv"), (B, k.shape[1], H, None))
    return B, T, HQ, H, Dk, v.shape[3]


def _finish(out: Tensor, lse: Tensor, return_lse: bool):
    return (out, lse) if return_lse else out


def compressed_attention(q: Tensor, k_cmp: Tensor, v_cmp: Tensor, gate: Optional[Tensor] = None, *, l: int,
                         d: int, scale: Optional[float] = None, return_lse: bool = False,
                         check_gate_range: bool = True):
    """Compressed branch on nsajit: ``gate * Attn(q, k_cmp, v_cmp)`` with query t seeing
    compressed token i iff ``i*d + l - 1 <= t``. ``k_cmp [B, Tc, H, Dk]``, ``v_cmp
    [B, Tc, H, Dv]`` with Tc = (T - l) // d + 1 (0 when T < l). Returns out [B, T, HQ, Dv]
    (and lse [B, T, HQ] float32 with ``return_lse``)."""
    _check_dtypes([("q", q), ("k_cmp", k_cmp), ("v_cmp", v_cmp)])
    _check_shape("q", q, ("B", "T", "HQ", "Dk"), (None, None, None, None))
    if l < 1 or d < 1 or d > l or l % d != 0:
        raise ValueError(f"bad compression l = {l}, d = {d}: need 1 <= d <= l and l % d == 0")
    tc = _ref.num_compressed(q.shape[1], l, d)
    B, T, HQ, H, Dk, Dv = _qkv_shapes(q, k_cmp, v_cmp, "k_cmp", "v_cmp", "Tc", tc)
    if gate is not None:
        _check_gate("gate", gate, B, T, HQ)
    for name, t in (("q", q), ("k_cmp", k_cmp), ("v_cmp", v_cmp)):
        _check_inner(name, t)
    if gate is not None and check_gate_range:
        _check_gate_range("gate", gate)
    cfg = _make_config(_capi.Branch.COMPRESSED, q.dtype, Dk, Dv, H, HQ // H, l=l, d=d, scale=scale)
    _check_devices([("q", q), ("k_cmp", k_cmp), ("v_cmp", v_cmp), ("gate", gate)])
    out, lse = CompressedAttention.apply(_kernel_layout(q), _kernel_layout(k_cmp), _kernel_layout(v_cmp),
                                         _gate32(gate), cfg)
    return _finish(out, lse, return_lse)


def selected_attention(q: Tensor, k: Tensor, v: Tensor, indices: Tensor, gate: Optional[Tensor] = None, *,
                       l_sel: int, scale: Optional[float] = None, return_lse: bool = False,
                       check_gate_range: bool = True, tokens_per_cta: Optional[int] = None):
    """Selected branch on nsajit: attention over the keys of the blocks listed in
    ``indices`` (int32 [B, T, H, n]; block j = keys j*l_sel .. j*l_sel + l_sel - 1, causal;
    -1, negative or future blocks are ignored, repeats attended as listed). The indices
    get no gradient. Returns out (and lse with ``return_lse``).

    ``tokens_per_cta`` picks the forward schedule: 1 = each token streams its own blocks;
    2..16 = a CTA of that many neighbouring tokens loads the union of their blocks once
    (faster when neighbours share blocks, as NSA's selections do); None = nsajit's default
    or tuned tile."""
    _check_dtypes([("q", q), ("k", k), ("v", v)])
    B, T, HQ, H, Dk, Dv = _qkv_shapes(q, k, v, "k", "v", "T", q.shape[1] if q.dim() == 4 else None)
    _check_indices(indices, B, T, H)
    if gate is not None:
        _check_gate("gate", gate, B, T, HQ)
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_inner(name, t)
    if gate is not None and check_gate_range:
        _check_gate_range("gate", gate)
    cfg = _make_config(_capi.Branch.SELECTED, q.dtype, Dk, Dv, H, HQ // H, l_sel=l_sel, n=indices.shape[-1],
                       scale=scale, tokens_per_cta=tokens_per_cta)
    _check_devices([("q", q), ("k", k), ("v", v), ("indices", indices), ("gate", gate)])
    out, lse = SelectedAttention.apply(_kernel_layout(q), _kernel_layout(k), _kernel_layout(v), indices,
                                       _gate32(gate), cfg)
    return _finish(out, lse, return_lse)


def window_attention(q: Tensor, k: Tensor, v: Tensor, gate: Optional[Tensor] = None, *, w: int,
                     scale: Optional[float] = None, return_lse: bool = False, check_gate_range: bool = True):
    """Sliding-window branch on nsajit: query t attends keys max(0, t - w + 1) .. t.
    Returns out (and lse with ``return_lse``)."""
    _check_dtypes([("q", q), ("k", k), ("v", v)])
    B, T, HQ, H, Dk, Dv = _qkv_shapes(q, k, v, "k", "v", "T", q.shape[1] if q.dim() == 4 else None)
    if gate is not None:
        _check_gate("gate", gate, B, T, HQ)
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_inner(name, t)
    if gate is not None and check_gate_range:
        _check_gate_range("gate", gate)
    cfg = _make_config(_capi.Branch.WINDOW, q.dtype, Dk, Dv, H, HQ // H, w=w, scale=scale)
    _check_devices([("q", q), ("k", k), ("v", v), ("gate", gate)])
    out, lse = WindowAttention.apply(_kernel_layout(q), _kernel_layout(k), _kernel_layout(v), _gate32(gate),
                                     cfg)
    return _finish(out, lse, return_lse)


def compress(x: Tensor, *, l: int, d: int, pool: str = "mean", weight: Optional[Tensor] = None) -> Tensor:
    """NSA's compression phi on nsajit's pooling kernels (``nsajit_compress_forward``,
    backward ``nsajit_compress_backward``): keys or values ``x [B, T, H, dim]`` (bf16/fp16,
    dim in 64, 128, 192, 256) pooled over blocks of ``l`` tokens with stride ``d`` into
    ``[B, Tc, H, dim]`` in x's dtype, Tc = (T - l) // d + 1 (0 when T < l):

    - ``pool='mean'``: ``out[i] = mean(x[i*d : i*d + l])``;
    - ``pool='weighted'``: ``out[i] = sum_p weight[p] * x[i*d + p]`` with ``weight [l]``
      (any floating dtype, read as float32; it gets a gradient).

    The kernel accumulates in float32 and rounds once to x's dtype, as
    ``nsajit.reference.compress(x.float(), ...).to(x.dtype)`` up to float32 summation order.
    The backward gives x's gradient (x's dtype) and, for 'weighted', the weight's (the
    kernels' float32 dweights, deterministic: no atomics). With Tc == 0 the output is empty
    and the gradients are zero; nothing is launched. Checks as the other wrappers, before
    any GPU work; runs on the current CUDA stream."""
    _check_is_tensor("x", x)
    if x.dtype not in _DTYPES:
        raise TypeError(f"x has dtype {x.dtype}; nsajit's compression kernels take torch.bfloat16 or torch.float16 "
                        f"(nsajit.reference.compress pools float32/float64)")
    _check_ints(l=l, d=d)
    _check_shape("x", x, ("B", "T", "H", "dim"), (None, None, None, None))
    B, T, H, D = x.shape
    if l < 1 or d < 1 or d > l or l % d != 0:
        raise ValueError(f"bad compression l = {l}, d = {d}: need 1 <= d <= l and l % d == 0")
    _check_pool(pool, weight, l, "weight", weight_for_mean_is_error=True)
    _check_inner("x", x)
    _check_pool_dim("x", D)
    cfg = _make_compress_config(x.dtype, D, H, l, d)
    _check_devices([("x", x), ("weight", weight)])
    _require_compress()
    return Compress.apply(_kernel_layout(x), _weight32(weight), cfg)


def _select_topn(cfg: _capi.NsajitConfig, q: Tensor, k_cmp: Tensor, lse_cmp: Tensor, H: int, n: int, *, l: int,
                 d: int, l_sel: int, initial: int, local: int) -> Tensor:
    """Launches nsajit_select_topn on validated tensors (q, k_cmp in the kernels' layout)."""
    B, T, HQ, _ = q.shape
    if B * T * H == 0:
        return torch.full((B, T, H, n), -1, dtype=torch.int32, device=q.device)
    if k_cmp.shape[1] == 0:
        # T < l: no compressed token, every block scores 0. The forced blocks, then the
        # lowest visible ones (ties go to the lower index), as the kernel's convention.
        nb = _ref.num_selection_blocks(T, l_sel)
        zeros = torch.zeros(B, T, H, nb, dtype=torch.float32, device=q.device)
        return _ref.select_topn(zeros, l_sel=l_sel, n=n, num_initial=initial, num_local=local)
    indices = torch.empty(B, T, H, n, dtype=torch.int32, device=q.device)  # every element written
    lib = _capi.library()
    with torch.cuda.device(q.device):
        ctx = context(q.device)
        lib.call("select_topn", ctx.handle, ctypes.byref(cfg), B, T, _view(q), _view(k_cmp), _view(lse_cmp),
                 _view(indices), _stream(q.device))
    return indices


def select_topn(q: Tensor, k_cmp: Tensor, lse_cmp: Tensor, *, l: int, d: int, l_sel: int, n: int,
                initial: int = 1, local: int = 2, scale: Optional[float] = None) -> Tensor:
    """Fused block scoring + top-n selection on nsajit (NSA eq. 9-12, ``nsajit_select_topn``).

    For every query token t and KV head: ``p_cmp = softmax(scale * q . k_cmp)`` over the
    compressed tokens visible to t, recomputed from ``lse_cmp`` (never stored), mapped to
    blocks of ``l_sel`` tokens by eq. 9, summed over the G query heads of the group, then
    the ``n`` best visible blocks (``j * l_sel <= t``), where the ``initial`` first blocks
    and the ``local`` blocks ending at t's own are always selected and count toward n;
    ties go to the lower index.

    - ``q [B, T, HQ, Dk]`` bf16/fp16; ``k_cmp [B, Tc, H, Dk]`` (same dtype) the compressed
      keys, Tc = (T - l) // d + 1 (0 when T < l);
    - ``lse_cmp [B, T, HQ]`` float32: the lse of :func:`compressed_attention` on the same
      q and k_cmp (``return_lse=True``), with the same ``scale``.

    Returns int32 ``[B, T, H, n]``: ascending block indices, then -1 (the convention of
    :func:`nsajit.reference.select_blocks`). Not differentiable; runs on the current CUDA
    stream. Checks as the other wrappers, before any GPU work."""
    _check_dtypes([("q", q), ("k_cmp", k_cmp)])
    _check_ints(l=l, d=d, l_sel=l_sel, n=n, initial=initial, local=local)
    _check_shape("q", q, ("B", "T", "HQ", "Dk"), (None, None, None, None))
    B, T, HQ, Dk = q.shape
    _check_selection(l, d, l_sel, n, initial, local)
    tc = _ref.num_compressed(T, l, d)
    _check_shape("k_cmp", k_cmp, ("B", "Tc", "H", "Dk"), (B, tc, None, Dk))
    H = k_cmp.shape[2]
    if H < 1 or HQ % H != 0:
        raise ValueError(f"q has HQ = {HQ} query heads, not a multiple of the H = {H} KV heads of k_cmp")
    _check_is_tensor("lse_cmp", lse_cmp)
    if lse_cmp.dtype != torch.float32:
        raise TypeError(f"lse_cmp has dtype {lse_cmp.dtype}; it must be torch.float32 [B, T, HQ], the lse of "
                        f"compressed_attention(q, k_cmp, v_cmp, ..., return_lse=True)")
    _check_shape("lse_cmp", lse_cmp, ("B", "T", "HQ"), (B, T, HQ))
    for name, t in (("q", q), ("k_cmp", k_cmp)):
        _check_inner(name, t)
    cfg = _make_topn_config(q.dtype, Dk, H, HQ // H, l=l, d=d, l_sel=l_sel, n=n, initial=initial, local=local,
                            scale=scale)
    _check_devices([("q", q), ("k_cmp", k_cmp), ("lse_cmp", lse_cmp)])
    _require_select_topn()
    with torch.no_grad():
        return _select_topn(cfg, _kernel_layout(q.detach()), _kernel_layout(k_cmp.detach()), lse_cmp.detach(), H,
                            n, l=l, d=d, l_sel=l_sel, initial=initial, local=local)


def nsa_attention(q: Tensor, k: Optional[Tensor], v: Optional[Tensor], g_cmp: Tensor, g_slc: Tensor,
                  g_swa: Tensor, *, l: int, d: int, l_sel: int, n: int, w: int, scale: Optional[float] = None,
                  k_cmp: Optional[Tensor] = None, v_cmp: Optional[Tensor] = None,
                  k_slc: Optional[Tensor] = None, v_slc: Optional[Tensor] = None,
                  k_swa: Optional[Tensor] = None, v_swa: Optional[Tensor] = None,
                  kc: Optional[Tensor] = None, vc: Optional[Tensor] = None,
                  pool: str = "mean", pool_weight: Optional[Tensor] = None,
                  indices: Optional[Tensor] = None, num_initial: int = 1, num_local: int = 2,
                  return_indices: bool = False, return_lse: bool = False, check_gate_range: bool = True,
                  selection: str = "fused", selection_chunk: int = _ref.DEFAULT_CHUNK,
                  compression: str = "kernel"):
    """Native Sparse Attention on nsajit; arguments and return value as
    :func:`nsajit.reference.nsa_attention` (bf16/fp16 CUDA tensors).

    - compression of k/v (or k_cmp/v_cmp) into the compressed keys/values, unless ``kc`` /
      ``vc`` are given (``pool``: 'mean', or 'weighted' with ``pool_weight [l]``, any
      floating dtype): ``compression='kernel'`` (default) runs nsajit's pooling kernels
      (:func:`compress`; float32 accumulation, one rounding to q's dtype; the backward
      kernels give the gradients of k, v and pool_weight); ``compression='reference'``
      runs :func:`nsajit.reference.compress` in PyTorch in float32 (differentiable) and
      rounds to q's dtype. Both round once from float32, so they agree up to float32
      summation order (rarely 1 ulp of q's dtype);
    - the selection (eq. 9-12, ``num_initial`` + ``num_local`` forced blocks), unless
      ``indices`` (int32 [B, T, H, n]) is given: ``selection='fused'`` (default) runs the
      fused scoring + top-n kernel (:func:`select_topn`) on the compressed branch's lse;
      ``selection='reference'`` runs :func:`nsajit.reference.select_blocks` in PyTorch on
      the GPU under ``torch.no_grad``, ``selection_chunk`` query tokens at a time (memory
      ``[B, chunk, HQ, Tc]``). Both give the same indices up to float near ties;
    - the three branches run through nsajit, forward and backward; the gates get their
      gradients from the backward kernels. Each gated branch output is rounded to q's
      dtype, and their sum is formed in float32 and rounded to q's dtype.

    The PyTorch parts (reference compression and selection) run in float32 also inside a
    ``torch.autocast`` region.
    """
    _check_is_tensor("q", q)

    def pick(name, given, default):
        t = given if given is not None else default
        if t is None:
            raise ValueError(f"{name} is not given and there is no shared k/v to fall back on")
        return t

    if (kc is None) != (vc is None):
        raise ValueError("give both kc and vc (already compressed keys/values) or neither")
    k_s, v_s = pick("k_slc", k_slc, k), pick("v_slc", v_slc, v)
    k_w, v_w = pick("k_swa", k_swa, k), pick("v_swa", v_swa, v)
    if kc is None:
        k_c, v_c = pick("k_cmp", k_cmp, k), pick("v_cmp", v_cmp, v)
        name_c = ("k_cmp" if k_cmp is not None else "k", "v_cmp" if v_cmp is not None else "v")
        t_c = (k_c, v_c)
    else:
        name_c, t_c = ("kc", "vc"), (kc, vc)
    name_s = ("k_slc" if k_slc is not None else "k", "v_slc" if v_slc is not None else "v")
    name_w = ("k_swa" if k_swa is not None else "k", "v_swa" if v_swa is not None else "v")
    named = [("q", q), (name_c[0], t_c[0]), (name_c[1], t_c[1]), (name_s[0], k_s), (name_s[1], v_s),
             (name_w[0], k_w), (name_w[1], v_w)]
    dtype = _check_dtypes(named)
    for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_swa", g_swa)):
        _check_is_tensor(name, g)
    # pool_weight with pool='mean' is ignored (as before), not an error.
    _check_pool(pool, pool_weight, l, "pool_weight", weight_for_mean_is_error=False, pooling=kc is None)
    if compression not in ("kernel", "reference"):
        raise ValueError(f"compression = {compression!r} is unknown; allowed: 'kernel' (nsajit's pooling kernels), "
                         f"'reference' (PyTorch, float32)")
    kernel_compression = kc is None and compression == "kernel"
    weighted = kc is None and pool == "weighted"

    # Shapes.
    _check_shape("q", q, ("B", "T", "HQ", "Dk"), (None, None, None, None))
    B, T, HQ, Dk = q.shape
    if l < 1 or d < 1 or d > l or l % d != 0:
        raise ValueError(f"bad compression l = {l}, d = {d}: need 1 <= d <= l and l % d == 0")
    if kc is not None:
        _qkv_shapes(q, kc, vc, "kc", "vc", "Tc", _ref.num_compressed(T, l, d))
    else:
        _qkv_shapes(q, k_c, v_c, name_c[0], name_c[1], "T", T)
    _, _, _, H, _, Dv = _qkv_shapes(q, k_s, v_s, name_s[0], name_s[1], "T", T)
    _qkv_shapes(q, k_w, v_w, name_w[0], name_w[1], "T", T)
    for name, t in named[1:]:
        if t.shape[2] != H:
            raise ValueError(f"{name} has {t.shape[2]} KV heads but {name_s[0]} has {H}: all branches need the "
                             f"same H")
        if t.shape[3] != (Dk if name.startswith("k") else Dv):
            raise ValueError(f"{name} has head dim {t.shape[3]}, expected {Dk if name.startswith('k') else Dv}")
    for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_swa", g_swa)):
        _check_gate(name, g, B, T, HQ)
    if indices is not None:
        _check_indices(indices, B, T, H)
        if indices.shape[-1] != n:
            raise ValueError(f"indices has shape {list(indices.shape)}, expected [B={B}, T={T}, H={H}, n={n}]")
    if selection not in ("fused", "reference"):
        raise ValueError(f"selection = {selection!r} is unknown; allowed: 'fused' (the nsajit top-n kernel), "
                         f"'reference' (PyTorch)")
    if n < 1 or num_initial < 0 or num_local < 0 or num_initial + num_local > n:
        raise ValueError(f"bad selection n = {n}, num_initial = {num_initial}, num_local = {num_local}: need "
                         f"num_initial + num_local <= n")
    if l_sel < 1 or l_sel % d != 0:
        raise ValueError(f"l_sel = {l_sel} must be a positive multiple of d = {d} (eq. 9)")
    for name, t in named:
        _check_inner(name, t)
    if check_gate_range:
        for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_swa", g_swa)):
            _check_gate_range(name, g)
    G = HQ // H
    cfg_c = _make_config(_capi.Branch.COMPRESSED, dtype, Dk, Dv, H, G, l=l, d=d, scale=scale)
    cfg_s = _make_config(_capi.Branch.SELECTED, dtype, Dk, Dv, H, G, l_sel=l_sel, n=n, scale=scale)
    cfg_w = _make_config(_capi.Branch.WINDOW, dtype, Dk, Dv, H, G, w=w, scale=scale)
    fused = indices is None and selection == "fused"
    if fused:
        cfg_t = _make_topn_config(dtype, Dk, H, G, l=l, d=d, l_sel=l_sel, n=n, initial=num_initial,
                                  local=num_local, scale=scale)
    if kernel_compression:
        # Dk and Dv passed the branch configs above (64, 128, 192, 256): the pooling takes them.
        cfg_pk = _make_compress_config(dtype, Dk, H, l, d)
        cfg_pv = _make_compress_config(dtype, Dv, H, l, d)
    _check_devices(named + [("g_cmp", g_cmp), ("g_slc", g_slc), ("g_swa", g_swa),
                                     ("indices", indices), ("pool_weight", pool_weight if weighted else None)])
    if fused:
        _require_select_topn()
    if kernel_compression:
        _require_compress(" (or pass compression='reference' to compress in PyTorch)")

    # Compression, rounded once to q's dtype for the kernels (differentiable either way).
    if kernel_compression:
        weight = _weight32(pool_weight) if weighted else None
        kc = Compress.apply(_kernel_layout(k_c), weight, cfg_pk)
        vc = kc if v_c is k_c else Compress.apply(_kernel_layout(v_c), weight, cfg_pv)
    elif kc is None:
        with _no_autocast():
            weight = pool_weight.float() if weighted else None
            kc = _ref.compress(k_c.float(), l=l, d=d, pool=pool, weight=weight).to(dtype)
            vc = _ref.compress(v_c.float(), l=l, d=d, pool=pool, weight=weight).to(dtype)

    q_ = _kernel_layout(q)
    kc_ = _kernel_layout(kc)
    # The gated sum in one kernel where the library has it (the branches' outputs stay ungated),
    # and the same kernel sums the branches' dq.
    fused_sum = _capi.has_gated_combine()
    gates = [_gate32(g) for g in (g_cmp, g_slc, g_swa)]
    q_c, q_s, q_w = (q_, q_, q_)
    if fused_sum and q_.requires_grad:
        q_c, q_s, q_w = _SharedQuery.apply(q_, _make_config(_capi.Branch.WINDOW, dtype, Dk, Dk, H, G, w=w))
    o_c, lse_c = CompressedAttention.apply(q_c, kc_, _kernel_layout(vc), gates[0], cfg_c, fused_sum)

    # Selection (not differentiated): the fused kernel reads the compressed branch's lse.
    if indices is None:
        with torch.no_grad():
            if fused:
                indices = _select_topn(cfg_t, q_.detach(), kc_.detach(), lse_c, H, n, l=l, d=d, l_sel=l_sel,
                                       initial=num_initial, local=num_local)
            else:
                with _no_autocast():
                    indices = _ref.select_blocks(q.detach().float(), kc.detach().float(), l=l, d=d, l_sel=l_sel,
                                                 n=n, scale=scale, num_initial=num_initial, num_local=num_local,
                                                 chunk=selection_chunk)

    o_s, lse_s = SelectedAttention.apply(q_s, _kernel_layout(k_s), _kernel_layout(v_s), indices, gates[1], cfg_s,
                                         fused_sum)
    o_w, lse_w = WindowAttention.apply(q_w, _kernel_layout(k_w), _kernel_layout(v_w), gates[2], cfg_w, fused_sum)
    o = _GatedBranchSum.apply(o_c, o_s, o_w, *gates, cfg_w) if fused_sum else _BranchSum.apply(o_c, o_s, o_w)
    if return_indices and return_lse:
        return o, indices, (lse_c, lse_s, lse_w)
    if return_indices:
        return o, indices
    if return_lse:
        return o, (lse_c, lse_s, lse_w)
    return o


def tune(branch: str, *, dtype: torch.dtype = torch.bfloat16, dk: int = 128, dv: int = 128, heads: int = 4,
         group: int = 16, l: int = 32, d: int = 16, l_sel: int = 64, n: int = 16, w: int = 512,
         seq_len: int = 16384, batch: int = 1, repeats: int = 20, device=None, progress=True,
         backward: bool = False) -> dict:
    """Autotunes the forward kernel of ``branch`` ('compressed', 'selected' or 'window') for
    this head configuration on the GPU of ``device``: every legal tile is timed on random
    inputs of batch x seq_len tokens and the fastest is recorded in the per-GPU tuning
    database (in the cache directory), which every later launch with default tiles uses,
    in this process and others. Returns the tuner's result (best and default tile, ms).
    ``backward=True`` also tunes the branch's backward (the dK/dV split length, see
    ``Context.tune_backward``); its result is under the key ``"backward"``."""
    b = _capi.Branch(_capi._branch(branch))  # ValueError naming the allowed branches
    if dtype not in (torch.bfloat16, torch.float16):
        raise TypeError(f"dtype = {dtype} is not supported; allowed: torch.bfloat16, torch.float16")
    kw = {_capi.Branch.COMPRESSED: dict(l=l, d=d), _capi.Branch.SELECTED: dict(l_sel=l_sel, n=n),
          _capi.Branch.WINDOW: dict(w=w)}[b]
    cfg = _make_config(b, dtype, dk, dv, heads, group, **kw)
    ctx = context(device)
    result = ctx.tune(cfg, b, batch=batch, seq_len=seq_len, repeats=repeats, progress=progress)
    if backward:
        result["backward"] = ctx.tune_backward(cfg, b, batch=batch, seq_len=seq_len, repeats=repeats,
                                               progress=progress)
    return result


def prepare(*, dtype: torch.dtype = torch.bfloat16, dk: int = 128, dv: int = 128, heads: int = 4, group: int = 16,
            l: int = 32, d: int = 16, l_sel: int = 64, n: int = 16, w: int = 512, num_initial: int = 1,
            num_local: int = 2, scale: Optional[float] = None, seq_len: int = 0, batch: int = 1, device=None,
            weighted_pool: bool = False, progress=False) -> int:
    """Compiles (or loads from the caches) every kernel :func:`nsa_attention` needs for this
    head configuration, in parallel, so that the first training step does not stop to
    compile: the forward and backward of the three branches, the fused top-n and the mean
    pooling of k and v. With ``seq_len`` the forward kernels get their tuned tiles for
    batch x seq_len; ``weighted_pool=True`` adds the weighted pooling kernels (for
    ``pool='weighted'``). Returns the number of kernels."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise TypeError(f"dtype = {dtype} is not supported; allowed: torch.bfloat16, torch.float16")
    _check_selection(l, d, l_sel, n, num_initial, num_local)
    cfg = _capi.make_config(dtype=int(_DTYPES[dtype]), head_dim_qk=dk, head_dim_v=dv, num_kv_heads=heads,
                            group=group, cmp_block=l, cmp_stride=d, slc_block=l_sel, slc_count=n, window=w,
                            scale=float(scale) if scale is not None else 0.0, slc_initial=num_initial,
                            slc_local=num_local)
    flags = 15 | (16 if weighted_pool else 0)
    return context(device).prepare(cfg, flags, batch=batch, seq_len=seq_len, progress=progress)

