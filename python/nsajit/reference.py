"""Plain PyTorch reference of Native Sparse Attention (docs/NSA.md).

Differentiable by autograd, on any device, in float32 or float64 (other
floating dtypes work but lose accuracy). It follows the C++ float64 oracle
(runtime/reference/Reference.h) convention for convention:

- shapes ``q [B, T, HQ, Dk]``, ``k [B, Tkv, H, Dk]``, ``v [B, Tkv, H, Dv]``,
  ``o [B, T, HQ, Dv]``, ``lse [B, T, HQ]``, ``indices int32 [B, T, H, n]``,
  gates ``[B, T, HQ]``; HQ = H * G and query head ``hq`` uses KV head ``hq // G``;
- a query that sees no key gets ``o = 0`` and ``lse = -inf`` (never NaN, also
  in the gradient);
- softmax scale ``1/sqrt(Dk)`` unless given.

Memory: the attention functions walk the queries in chunks (``chunk`` tokens,
default 256), so the largest intermediate is ``[B, chunk, HQ, Tkv]`` scores (the window
branch only touches the ``chunk + w`` keys a chunk can see, the causal ones the keys up
to the chunk's end); no ``T x T x HQ x D`` tensor is built. Autograd still keeps every
chunk's scores unless ``checkpoint=True``, which recomputes them in backward. The selection scores (``p_cmp``) are also
computed per query chunk in :func:`select_blocks`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

__all__ = [
    "num_compressed",
    "num_selection_blocks",
    "compress",
    "compressed_attention",
    "selected_attention",
    "window_attention",
    "causal_attention",
    "compressed_probabilities",
    "block_importance",
    "shared_block_scores",
    "select_topn",
    "select_blocks",
    "gated_combine",
    "nsa_attention",
]

DEFAULT_CHUNK = 256

Tensor = torch.Tensor


# ---- sizes -----------------------------------------------------------------------


def num_compressed(T: int, l: int, d: int) -> int:
    """Tc = (T - l) // d + 1 when T >= l, else 0."""
    _check_compression(l, d)
    return (T - l) // d + 1 if T >= l else 0


def num_selection_blocks(T: int, l_sel: int) -> int:
    """NB = ceil(T / l_sel)."""
    if l_sel < 1:
        raise ValueError(f"l_sel = {l_sel} must be >= 1")
    return (T + l_sel - 1) // l_sel


def _check_compression(l: int, d: int) -> None:
    if l < 1 or d < 1 or d > l or l % d != 0:
        raise ValueError(f"bad compression l = {l}, d = {d}: need 1 <= d <= l and l % d == 0")


def _default_scale(scale: Optional[float], dk: int) -> float:
    return 1.0 / math.sqrt(dk) if scale is None else float(scale)


def _check_qkv(fn: str, q: Tensor, k: Tensor, v: Tensor) -> Tuple[int, int, int, int, int]:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"{fn}: q, k, v must be 4-D [B, T, heads, D]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, T, HQ, Dk = q.shape
    H = k.shape[2]
    if k.shape[0] != B or k.shape[3] != Dk or H < 1 or HQ % H != 0:
        raise ValueError(f"{fn}: k {tuple(k.shape)} must be [B={B}, Tkv, H, Dk={Dk}] with HQ={HQ} a multiple of H")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"{fn}: v {tuple(v.shape)} must be [B, Tkv, H, Dv] with B, Tkv, H of k {tuple(k.shape)}")
    return B, T, H, HQ // H, v.shape[3]


# ---- the masked attention core -----------------------------------------------------


def _attend_chunk(qc: Tensor, k: Tensor, v: Tensor, scale: float, w: Tensor, G: int) -> Tuple[Tensor, Tensor]:
    """One query chunk: qc [B, C, HQ, Dk] against keys k/v [B, K, H, *] with key
    multiplicities w (broadcastable to [B, C, H, K]). Returns o [B, C, HQ, Dv], lse [B, C, HQ]."""
    B, C, HQ, Dk = qc.shape
    H, Dv = k.shape[2], v.shape[3]
    s = torch.einsum("bchgd,bshd->bchgs", qc.reshape(B, C, H, G, Dk), k) * scale  # [B, C, H, G, K]
    w = w.to(s.dtype) if w.dtype != s.dtype else w
    w = w.unsqueeze(-2)  # [.., C, H, 1, K]
    visible = w > 0
    m = s.masked_fill(~visible, -math.inf).amax(dim=-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s.masked_fill(~visible, -math.inf) - m) * w
    denom = p.sum(dim=-1)  # [B, C, H, G]
    has = denom > 0
    safe = torch.where(has, denom, torch.ones_like(denom))
    o = torch.einsum("bchgs,bshd->bchgd", p, v) / safe.unsqueeze(-1)
    lse = torch.where(has, m.squeeze(-1) + torch.log(safe), torch.full_like(safe, -math.inf))
    return o.reshape(B, C, HQ, Dv), lse.reshape(B, C, HQ)


def _attend(q: Tensor, k: Tensor, v: Tensor, scale: float, weight_fn, chunk: int, key_range=None,
            checkpoint: bool = False) -> Tuple[Tensor, Tensor]:
    """softmax attention where ``weight_fn(t0, t1, k0, k1)`` gives, for queries t0..t1-1 and
    keys k0..k1-1, the multiplicity of every key: a tensor broadcastable to [B, C, H, k1-k0]
    (bool or float: 0 = invisible, 2 = attended twice). ``key_range(t0, t1)`` bounds the
    keys any of those queries can see (default: all); keys outside it are skipped, which
    only saves work. ``checkpoint``: recompute each chunk in backward
    (``torch.utils.checkpoint``), so autograd keeps O(T) instead of O(T x Tkv) memory.
    Returns o [B, T, HQ, Dv], lse [B, T, HQ]."""
    B, T, HQ, Dk = q.shape
    H, Dv = k.shape[2], v.shape[3]
    G = HQ // H
    Tkv = k.shape[1]
    outs, lses = [], []
    if Tkv == 0:
        o = q.new_zeros(B, T, HQ, Dv) + 0.0 * q.sum()  # keep q in the graph (zero gradient)
        lse = q.new_full((B, T, HQ), -math.inf)
        return o, lse
    recompute = checkpoint and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        k0, k1 = key_range(t0, t1) if key_range is not None else (0, Tkv)
        k0 = max(0, min(int(k0), Tkv - 1))
        k1 = max(k0 + 1, min(int(k1), Tkv))  # at least one key: masked rows still give 0 / -inf
        w = weight_fn(t0, t1, k0, k1)
        args = (q[:, t0:t1], k[:, k0:k1], v[:, k0:k1], scale, w, G)
        if recompute:
            from torch.utils.checkpoint import checkpoint as _checkpoint
            o, lse = _checkpoint(_attend_chunk, *args, use_reentrant=False)
        else:
            o, lse = _attend_chunk(*args)
        outs.append(o)
        lses.append(lse)
    return torch.cat(outs, dim=1), torch.cat(lses, dim=1)


def _positions(t0: int, t1: int, device) -> Tensor:
    return torch.arange(t0, t1, device=device)


def compressed_attention(q: Tensor, k_cmp: Tensor, v_cmp: Tensor, *, l: int, d: int,
                         scale: Optional[float] = None, chunk: int = DEFAULT_CHUNK,
                         checkpoint: bool = False) -> Tuple[Tensor, Tensor]:
    """Compressed branch: query t attends compressed token i iff ``i*d + l - 1 <= t``.

    ``k_cmp [B, Tc, H, Dk]``, ``v_cmp [B, Tc, H, Dv]`` (any Tc; the kernels use
    Tc = num_compressed(T, l, d)). Returns ``(o, lse)``; rows that see no complete
    block get 0 and -inf. ``checkpoint=True`` recomputes each query chunk in backward
    (memory O(chunk x Tc) instead of O(T x Tc))."""
    _check_compression(l, d)
    _check_qkv("compressed_attention", q, k_cmp, v_cmp)
    scale = _default_scale(scale, q.shape[-1])
    Tc = k_cmp.shape[1]
    last = torch.arange(Tc, device=q.device) * d + (l - 1)  # last token of compressed block i

    def weights(t0, t1, k0, k1):
        t = _positions(t0, t1, q.device)
        return (last[None, k0:k1] <= t[:, None])[None, :, None, :]  # [1, C, 1, K]

    def keys(t0, t1):
        return 0, ((t1 - l) // d + 1 if t1 >= l else 0)  # compressed tokens complete by t1 - 1

    return _attend(q, k_cmp, v_cmp, scale, weights, chunk, keys, checkpoint)


def window_attention(q: Tensor, k: Tensor, v: Tensor, *, w: int, scale: Optional[float] = None,
                     chunk: int = DEFAULT_CHUNK, checkpoint: bool = False) -> Tuple[Tensor, Tensor]:
    """Sliding window: query t attends keys ``max(0, t - w + 1) .. t``. Returns ``(o, lse)``.
    Each query chunk only touches the keys its window can reach (O(T x (chunk + w)) work)."""
    if w < 1:
        raise ValueError(f"window w = {w} must be >= 1")
    B, T, H, G, Dv = _check_qkv("window_attention", q, k, v)
    scale = _default_scale(scale, q.shape[-1])
    Tkv = k.shape[1]
    j = torch.arange(Tkv, device=q.device)

    def weights(t0, t1, k0, k1):
        t = _positions(t0, t1, q.device)[:, None]
        jj = j[None, k0:k1]
        return ((jj <= t) & (jj > t - w))[None, :, None, :]

    def keys(t0, t1):
        return max(0, t0 - w + 1), t1

    return _attend(q, k, v, scale, weights, chunk, keys, checkpoint)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: Optional[float] = None,
                     chunk: int = DEFAULT_CHUNK, checkpoint: bool = False) -> Tuple[Tensor, Tensor]:
    """Full causal attention (query t attends keys 0..t)."""
    return window_attention(q, k, v, w=max(1, k.shape[1], q.shape[1]), scale=scale, chunk=chunk,
                            checkpoint=checkpoint)


def _block_counts(indices: Tensor, t0: int, t1: int, l_sel: int, nb: int) -> Tensor:
    """How often each block is listed for queries t0..t1-1: [B, C, H, NB] (invalid entries dropped)."""
    idx = indices[:, t0:t1].long()  # [B, C, H, n]
    t = _positions(t0, t1, indices.device)[None, :, None, None]
    valid = (idx >= 0) & (idx < nb) & (idx * l_sel <= t)
    slot = torch.where(valid, idx, torch.full_like(idx, nb))
    counts = torch.zeros(idx.shape[:3] + (nb + 1,), dtype=torch.int64, device=indices.device)
    counts.scatter_add_(-1, slot, valid.long())
    return counts[..., :nb]


def selected_attention(q: Tensor, k: Tensor, v: Tensor, indices: Tensor, *, l_sel: int,
                       scale: Optional[float] = None, chunk: int = DEFAULT_CHUNK,
                       checkpoint: bool = False) -> Tuple[Tensor, Tensor]:
    """Selected branch: for each (b, t, kv head) attend the keys of the listed blocks
    (block j = keys ``j*l_sel .. j*l_sel + l_sel - 1``, those ``<= t``).

    ``indices`` int [B, T, H, n]. An index that is negative (-1 padding), ``>= NB``
    or whose block starts after t contributes nothing; a repeated index is attended as
    often as it is listed (its keys' softmax weight counts twice). Returns ``(o, lse)``.
    ``checkpoint=True`` recomputes each query chunk in backward."""
    B, T, H, G, Dv = _check_qkv("selected_attention", q, k, v)
    if indices.dim() != 4 or tuple(indices.shape[:3]) != (B, T, H):
        raise ValueError(f"selected_attention: indices {tuple(indices.shape)} must be [B={B}, T={T}, H={H}, n]")
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(f"selected_attention: indices must be an integer tensor, got {indices.dtype}")
    if l_sel < 1:
        raise ValueError(f"l_sel = {l_sel} must be >= 1")
    scale = _default_scale(scale, q.shape[-1])
    Tkv = k.shape[1]
    nb = num_selection_blocks(Tkv, l_sel)
    key_block = torch.arange(Tkv, device=q.device) // l_sel
    j = torch.arange(Tkv, device=q.device)
    indices = indices.to(q.device)

    def weights(t0, t1, k0, k1):
        counts = _block_counts(indices, t0, t1, l_sel, nb)  # [B, C, H, NB]
        per_key = counts[..., key_block[k0:k1]]  # [B, C, H, K]
        t = _positions(t0, t1, q.device)
        causal = (j[None, k0:k1] <= t[:, None])[None, :, None, :]
        return per_key * causal

    def keys(t0, t1):
        return 0, t1

    return _attend(q, k, v, scale, weights, chunk, keys, checkpoint)


# ---- compression (phi) -------------------------------------------------------------


def compress(x: Tensor, *, l: int, d: int, pool: str = "mean", weight: Optional[Tensor] = None) -> Tensor:
    """Compresses keys or values ``x [B, T, H, D]`` into ``[B, Tc, H, D]``.

    ``pool='mean'``: ``out[i] = mean(x[i*d : i*d + l])``.
    ``pool='weighted'``: ``out[i] = sum_p weight[p] * x[i*d + p]`` with ``weight [l]``
    (one weight per position in the block; differentiable)."""
    _check_compression(l, d)
    if x.dim() != 4:
        raise ValueError(f"compress: x must be [B, T, H, D], got {tuple(x.shape)}")
    B, T, H, D = x.shape
    Tc = num_compressed(T, l, d)
    if pool not in ("mean", "weighted"):
        raise ValueError(f"compress: pool = {pool!r} is unknown; allowed: 'mean', 'weighted'")
    if pool == "weighted":
        if weight is None:
            raise ValueError("compress: pool='weighted' needs weight [l]")
        if tuple(weight.shape) != (l,):
            raise ValueError(f"compress: weight {tuple(weight.shape)} must be [l] = [{l}]")
    elif weight is not None:
        raise ValueError("compress: weight is only used with pool='weighted'")
    if Tc == 0:
        return x.new_zeros(B, 0, H, D) + 0.0 * x.sum()
    blocks = x.unfold(1, l, d)  # [B, Tc, H, D, l] (a view)
    if pool == "mean":
        return blocks.sum(dim=-1) / l
    return torch.einsum("bchdp,p->bchd", blocks, weight.to(x.dtype))


# ---- selection scores and top-n -------------------------------------------------------


def compressed_probabilities(q: Tensor, k_cmp: Tensor, *, l: int, d: int, scale: Optional[float] = None,
                             t_offset: int = 0) -> Tensor:
    """p_cmp [B, T, HQ, Tc]: softmax over the compressed tokens visible to t of
    ``scale * q . k_cmp`` (0 for invisible tokens, an all-zero row when none is visible).
    ``t_offset``: position of q's first token (for query chunks)."""
    _check_compression(l, d)
    B, T, HQ, Dk = q.shape
    H, Tc = k_cmp.shape[2], k_cmp.shape[1]
    G = HQ // H
    scale = _default_scale(scale, Dk)
    if Tc == 0:
        return q.new_zeros(B, T, HQ, 0)
    s = torch.einsum("bthgd,bshd->bthgs", q.reshape(B, T, H, G, Dk), k_cmp) * scale
    t = torch.arange(t_offset, t_offset + T, device=q.device)
    last = torch.arange(Tc, device=q.device) * d + (l - 1)
    visible = (last[None, :] <= t[:, None])[None, :, None, None, :]
    s = s.masked_fill(~visible, -math.inf)
    m = s.amax(dim=-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    denom = e.sum(dim=-1, keepdim=True)
    p = e / torch.where(denom > 0, denom, torch.ones_like(denom))
    return p.reshape(B, T, HQ, Tc)


def _eq9_terms(l: int, d: int, l_sel: int, variant: str):
    """Eq. 9 as ``p_slc[j] = sum_off coef[off] * p_cmp[a*j + off]`` (a = l'/d, b = l/d):
    a box filter of length a convolved with one of length b. Returns {off: coef}."""
    a, b = l_sel // d, l // d
    sign = -1 if variant == "paper" else 1
    coef = {}
    for m in range(a):
        for n in range(b):
            off = sign * m - n
            coef[off] = coef.get(off, 0) + 1
    return coef


def block_importance(p_cmp: Tensor, *, l: int, d: int, l_sel: int, T: Optional[int] = None,
                     variant: str = "paper") -> Tensor:
    """p_slc [B, T, HQ, NB] (NB = ceil(T / l_sel)) from p_cmp [B, T, HQ, Tc] by the paper's
    eq. 9 exactly as written in docs/NSA.md:

        p_slc[j] = sum_{m=0}^{l'/d-1} sum_{n=0}^{l/d-1} p_cmp[(l'/d)*j - m - n]

    (out-of-range terms are 0). With l = 32, d = 16, l' = 64 this is
    ``p[4j] + 2 p[4j-1] + 2 p[4j-2] + 2 p[4j-3] + p[4j-4]``.
    ``variant='overlap'`` uses ``(l'/d)*j + m - n`` instead (weights = shared stride-d
    chunks of compressed token i and block j; blockImportanceOverlap in the C++ reference).
    ``T`` is the sequence length (default: p_cmp.shape[1]). Exact (shifted adds, no
    matmul or convolution, so no TF32 on GPUs)."""
    _check_compression(l, d)
    if l_sel < 1 or l_sel % d != 0:
        raise ValueError(f"block_importance: l_sel = {l_sel} must be a positive multiple of d = {d}")
    if variant not in ("paper", "overlap"):
        raise ValueError(f"block_importance: variant = {variant!r}; allowed: 'paper', 'overlap'")
    T = p_cmp.shape[1] if T is None else T
    nb = num_selection_blocks(T, l_sel)
    Tc = p_cmp.shape[-1]
    a = l_sel // d
    out_shape = tuple(p_cmp.shape[:-1]) + (nb,)
    if Tc == 0 or nb == 0:
        return p_cmp.new_zeros(out_shape) + 0.0 * p_cmp.sum()
    coef = _eq9_terms(l, d, l_sel, variant)
    lo, hi = min(coef), max(coef)
    # pp[x] = p_cmp[x + lo], zero outside 0..Tc-1; long enough for x = a*(nb-1) + hi - lo.
    right = max(0, a * (nb - 1) + hi + 1 - Tc)
    pp = torch.nn.functional.pad(p_cmp, (-lo, right)) if (lo < 0 or right > 0) else p_cmp
    out = None
    for off, c in sorted(coef.items()):
        start = off - lo
        term = pp[..., start:start + a * (nb - 1) + 1:a]
        term = term * c if c != 1 else term
        out = term if out is None else out + term
    return out


def shared_block_scores(p_slc: Tensor, H: int) -> Tensor:
    """Eq. 10: [B, T, H, NB] = sum of p_slc [B, T, HQ, NB] over the G query heads of each KV head."""
    B, T, HQ, nb = p_slc.shape
    if HQ % H != 0:
        raise ValueError(f"shared_block_scores: HQ = {HQ} is not a multiple of H = {H}")
    return p_slc.reshape(B, T, H, HQ // H, nb).sum(dim=3)


def select_topn(scores: Tensor, *, l_sel: int, n: int, num_initial: int = 1, num_local: int = 2,
                t_offset: int = 0) -> Tensor:
    """Eq. 11-12 with the paper's forced blocks, from shared scores [B, T, H, NB].

    For query t block j is visible iff ``j * l_sel <= t``. The forced blocks (initial
    ``0 .. num_initial-1`` and local ``t//l_sel - num_local + 1 .. t//l_sel``, where
    visible) are always selected and count toward n; the other slots take the visible
    blocks with the largest score, ties going to the lower index. With fewer than n
    visible blocks all are selected. Returns int32 [B, T, H, n]: the selected indices
    in ascending order, then -1 padding (the convention of selectTopNFromScores in
    runtime/reference/Reference.h). ``t_offset`` = position of the first row."""
    if l_sel < 1 or n < 1 or num_initial < 0 or num_local < 0 or num_initial + num_local > n:
        raise ValueError(f"select_topn: bad l_sel = {l_sel}, n = {n}, num_initial = {num_initial}, "
                         f"num_local = {num_local} (need num_initial + num_local <= n)")
    B, T, H, nb = scores.shape
    device = scores.device
    if nb == 0:
        return torch.full((B, T, H, n), -1, dtype=torch.int32, device=device)
    t = torch.arange(t_offset, t_offset + T, device=device)[:, None]  # [T, 1]
    j = torch.arange(nb, device=device)[None, :]  # [1, NB]
    current = torch.div(t, l_sel, rounding_mode="floor")
    visible = j <= current
    forced = visible & ((j < num_initial) | (j > current - num_local))
    rank = visible.long() + forced.long()  # 2 forced, 1 visible, 0 invisible: [T, NB]
    rank = rank[None, :, None, :].expand(B, T, H, nb)
    # Lexicographic (rank desc, score desc, index asc) with two stable sorts.
    sc = scores.detach()
    order = torch.sort(sc, dim=-1, descending=True, stable=True).indices
    order = order.gather(-1, torch.sort(rank.gather(-1, order), dim=-1, descending=True, stable=True).indices)
    k = min(n, nb)
    top = order[..., :k]
    ok = rank.gather(-1, top) > 0
    top = torch.where(ok, top, torch.full_like(top, nb))  # invisible -> sorts last
    top = torch.sort(top, dim=-1).values
    top = torch.where(top < nb, top, torch.full_like(top, -1)).to(torch.int32)
    if k < n:
        top = torch.cat([top, torch.full((B, T, H, n - k), -1, dtype=torch.int32, device=device)], dim=-1)
    return top


@torch.no_grad()
def select_blocks(q: Tensor, k_cmp: Tensor, *, l: int, d: int, l_sel: int, n: int,
                  scale: Optional[float] = None, num_initial: int = 1, num_local: int = 2,
                  chunk: int = DEFAULT_CHUNK, variant: str = "paper") -> Tensor:
    """The whole selection: p_cmp (from q, k_cmp) -> eq. 9 -> GQA sum (eq. 10) -> top-n.
    Computed per query chunk (memory [B, chunk, HQ, Tc]); not differentiated.
    Returns int32 indices [B, T, H, n]."""
    B, T, HQ, Dk = q.shape
    H = k_cmp.shape[2]
    out = []
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        p = compressed_probabilities(q[:, t0:t1], k_cmp, l=l, d=d, scale=scale, t_offset=t0)
        p_slc = block_importance(p, l=l, d=d, l_sel=l_sel, T=T, variant=variant)
        shared = shared_block_scores(p_slc, H)
        out.append(select_topn(shared, l_sel=l_sel, n=n, num_initial=num_initial, num_local=num_local,
                               t_offset=t0))
    if not out:
        return torch.full((B, 0, H, n), -1, dtype=torch.int32, device=q.device)
    return torch.cat(out, dim=1)


# ---- gating and the whole thing -----------------------------------------------------


def gated_combine(o_cmp: Tensor, o_slc: Tensor, o_swa: Tensor, g_cmp: Tensor, g_slc: Tensor,
                  g_swa: Tensor) -> Tensor:
    """``g_cmp * o_cmp + g_slc * o_slc + g_swa * o_swa`` with gates [B, T, HQ] broadcast over Dv."""
    return g_cmp.unsqueeze(-1) * o_cmp + g_slc.unsqueeze(-1) * o_slc + g_swa.unsqueeze(-1) * o_swa


def _pick(name: str, given: Optional[Tensor], default: Optional[Tensor]) -> Tensor:
    t = given if given is not None else default
    if t is None:
        raise ValueError(f"nsa_attention: {name} is not given and there is no shared k/v to fall back on")
    return t


def nsa_attention(q: Tensor, k: Optional[Tensor], v: Optional[Tensor], g_cmp: Tensor, g_slc: Tensor,
                  g_swa: Tensor, *, l: int, d: int, l_sel: int, n: int, w: int, scale: Optional[float] = None,
                  k_cmp: Optional[Tensor] = None, v_cmp: Optional[Tensor] = None,
                  k_slc: Optional[Tensor] = None, v_slc: Optional[Tensor] = None,
                  k_swa: Optional[Tensor] = None, v_swa: Optional[Tensor] = None,
                  kc: Optional[Tensor] = None, vc: Optional[Tensor] = None,
                  pool: str = "mean", pool_weight: Optional[Tensor] = None,
                  indices: Optional[Tensor] = None, num_initial: int = 1, num_local: int = 2,
                  return_indices: bool = False, return_lse: bool = False,
                  chunk: int = DEFAULT_CHUNK, checkpoint: bool = False):
    """Native Sparse Attention, all three branches and the gates (docs/NSA.md).

    ``q [B, T, HQ, Dk]``; ``k [B, T, H, Dk]``, ``v [B, T, H, Dv]`` are the keys/values
    of every branch unless a branch has its own (``k_cmp/v_cmp``: raw keys/values of the
    compressed branch, compressed here with ``pool`` ('mean' or 'weighted' with
    ``pool_weight [l]``; ``kc/vc [B, Tc, H, D]`` give already-compressed ones instead);
    ``k_slc/v_slc``, ``k_swa/v_swa``). Gates ``g_* [B, T, HQ]``.

    The selection (eq. 9-12 with ``num_initial`` forced initial and ``num_local`` local
    blocks) uses q and the compressed keys, unless ``indices`` (int [B, T, H, n]) is
    given. It is not differentiated.

    ``checkpoint=True`` recomputes each query chunk of every branch in backward (memory
    O(T) instead of O(T x Tkv) for the autograd graph; use it for long sequences).

    Returns ``o [B, T, HQ, Dv]``; with ``return_indices`` and/or ``return_lse`` a tuple
    ``(o, indices)``, ``(o, (lse_cmp, lse_slc, lse_swa))`` or ``(o, indices, lse)``."""
    if q.dim() != 4:
        raise ValueError(f"nsa_attention: q must be [B, T, HQ, Dk], got {tuple(q.shape)}")
    if (kc is None) != (vc is None):
        raise ValueError("nsa_attention: give both kc and vc (already compressed) or neither")
    k_s, v_s = _pick("k_slc", k_slc, k), _pick("v_slc", v_slc, v)
    k_w, v_w = _pick("k_swa", k_swa, k), _pick("v_swa", v_swa, v)
    if kc is None:
        k_c, v_c = _pick("k_cmp", k_cmp, k), _pick("v_cmp", v_cmp, v)
        kc = compress(k_c, l=l, d=d, pool=pool, weight=pool_weight)
        vc = compress(v_c, l=l, d=d, pool=pool, weight=pool_weight)
    o_cmp, lse_cmp = compressed_attention(q, kc, vc, l=l, d=d, scale=scale, chunk=chunk, checkpoint=checkpoint)
    if indices is None:
        indices = select_blocks(q.detach(), kc.detach(), l=l, d=d, l_sel=l_sel, n=n, scale=scale,
                                num_initial=num_initial, num_local=num_local, chunk=chunk)
    o_slc, lse_slc = selected_attention(q, k_s, v_s, indices, l_sel=l_sel, scale=scale, chunk=chunk,
                                        checkpoint=checkpoint)
    o_swa, lse_swa = window_attention(q, k_w, v_w, w=w, scale=scale, chunk=chunk, checkpoint=checkpoint)
    o = gated_combine(o_cmp, o_slc, o_swa, g_cmp, g_slc, g_swa)
    if return_indices and return_lse:
        return o, indices, (lse_cmp, lse_slc, lse_swa)
    if return_indices:
        return o, indices
    if return_lse:
        return o, (lse_cmp, lse_slc, lse_swa)
    return o
