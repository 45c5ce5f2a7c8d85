"""nsajit.torch on a GPU against nsajit.reference in float32 (bf16 tolerance: rel err 2e-2).

Also the compression (``nsajit.torch.compress``, the pooling kernels) against
``nsajit.reference.compress`` in float64, forward and backward (dx, dweight), and
``nsa_attention(compression='kernel')`` against the reference layer with the gradients of
k, v (or k_cmp, v_cmp) and pool_weight.

Skipped with a visible reason where there is no CUDA device; the backward tests are
skipped where the loaded libnsajit.so has no backward entry points yet, the compression
tests where it has no nsajit_compress_forward/backward.
"""

import math

import pytest
import torch

import nsajit
import nsajit.torch as nt
from nsajit import reference as R

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU tests skipped")


TOL = 2e-2

CONFIGS = [
    dict(B=2, T=200, H=2, G=4, Dk=64, Dv=64, dtype=torch.bfloat16, l=32, d=16, l_sel=32, n=4, w=64),
    dict(B=1, T=300, H=1, G=16, Dk=128, Dv=128, dtype=torch.float16, l=16, d=16, l_sel=64, n=3, w=100),
    dict(B=1, T=257, H=2, G=1, Dk=192, Dv=128, dtype=torch.bfloat16, l=64, d=32, l_sel=64, n=4, w=33),
]
IDS = ["bf16-d64-g4", "fp16-d128-g16", "bf16-d192x128-g1"]


def rel_err(a, b):
    """||a - b|| / max(||b||, 1e-3 * sqrt(numel)) over b's finite entries (the RMS floor of
    test_gpu_matrix.rel_err: a reference that is zero, or nearly, is compared with an
    absolute RMS floor of 1e-3); inf when a has NaN or infinities where b has none."""
    a, b = a.detach().double(), b.detach().double()
    if torch.isnan(a).any() or not torch.equal(torch.isinf(a), torch.isinf(b)):
        return math.inf
    fin = torch.isfinite(b)
    num = (a[fin] - b[fin]).norm()
    den = max(float(b[fin].norm()), 1e-3 * math.sqrt(max(1, int(fin.sum()))))
    return float(num / den)


def inputs(c, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    B, T, H, G, Dk, Dv = c["B"], c["T"], c["H"], c["G"], c["Dk"], c["Dv"]
    q = torch.randn(B, T, H * G, Dk, device="cuda", generator=g).to(c["dtype"])
    k = torch.randn(B, T, H, Dk, device="cuda", generator=g).to(c["dtype"])
    v = torch.randn(B, T, H, Dv, device="cuda", generator=g).to(c["dtype"])
    gates = [torch.rand(B, T, H * G, device="cuda", generator=g) for _ in range(3)]
    return q, k, v, gates


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def ref32(*ts):
    return [leaf(t.float()) for t in ts]


def need_backward(branch):
    if not nsajit.has_backward(branch):
        pytest.skip(f"{nsajit.library().path} has no nsajit_{branch}_backward yet")


def run_branch(branch, c, q, k, v, gate, idx=None):
    """(out, lse) of nsajit and of the reference, for one branch."""
    if branch == "compressed":
        kc = R.compress(k.float(), l=c["l"], d=c["d"]).to(k.dtype)
        vc = R.compress(v.float(), l=c["l"], d=c["d"]).to(v.dtype)
        out = nt.compressed_attention(q, kc, vc, gate, l=c["l"], d=c["d"], return_lse=True)
        return out, (kc, vc)
    if branch == "selected":
        return nt.selected_attention(q, k, v, idx, gate, l_sel=c["l_sel"], return_lse=True), (k, v)
    return nt.window_attention(q, k, v, gate, w=c["w"], return_lse=True), (k, v)


def ref_branch(branch, c, q, k, v, idx=None):
    if branch == "compressed":
        return R.compressed_attention(q, k, v, l=c["l"], d=c["d"])
    if branch == "selected":
        return R.selected_attention(q, k, v, idx, l_sel=c["l_sel"])
    return R.window_attention(q, k, v, w=c["w"])


def indices_for(c, q, k):
    kc = R.compress(k.float(), l=c["l"], d=c["d"])
    return R.select_blocks(q.float(), kc, l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"])


@pytest.mark.parametrize("c", CONFIGS, ids=IDS)
@pytest.mark.parametrize("branch", ["compressed", "selected", "window"])
@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_branch_forward(branch, c, gated):
    q, k, v, gates = inputs(c)
    gate = gates[0] if gated else None
    idx = indices_for(c, q, k) if branch == "selected" else None
    (out, lse), (kk, vv) = run_branch(branch, c, q, k, v, gate, idx)
    assert out.dtype == q.dtype and out.shape == (c["B"], c["T"], c["H"] * c["G"], c["Dv"])
    assert lse.dtype == torch.float32
    o_ref, lse_ref = ref_branch(branch, c, q.float(), kk.float(), vv.float(), idx)
    if gated:
        o_ref = gate.unsqueeze(-1) * o_ref
    assert rel_err(out, o_ref) < TOL
    assert rel_err(lse, lse_ref) < TOL


@pytest.mark.parametrize("c", CONFIGS, ids=IDS)
@pytest.mark.parametrize("branch", ["compressed", "selected", "window"])
@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_branch_backward(branch, c, gated):
    need_backward(branch)
    q, k, v, gates = inputs(c, seed=1)
    idx = indices_for(c, q, k) if branch == "selected" else None
    q_, k_, v_ = leaf(q), leaf(k), leaf(v)
    gate_ = leaf(gates[1]) if gated else None
    (out, _), _ = run_branch(branch, c, q_, k_, v_, gate_, idx)
    dout = torch.randn_like(out)
    out.backward(dout)
    qr, kr, vr = ref32(q, k, v)
    gr = leaf(gates[1]) if gated else None
    if branch == "compressed":
        kcr, vcr = R.compress(kr, l=c["l"], d=c["d"]), R.compress(vr, l=c["l"], d=c["d"])
        o_ref, _ = ref_branch(branch, c, qr, kcr, vcr)
    else:
        o_ref, _ = ref_branch(branch, c, qr, kr, vr, idx)
    if gated:
        o_ref = gr.unsqueeze(-1) * o_ref
    o_ref.backward(dout.float())
    for name, got, want in (("dq", q_.grad, qr.grad), ("dk", k_.grad, kr.grad), ("dv", v_.grad, vr.grad)):
        assert got is not None and got.dtype == q.dtype, name
        assert rel_err(got, want) < TOL, name
    if gated:
        assert gate_.grad.dtype == torch.float32
        assert rel_err(gate_.grad, gr.grad) < TOL


@pytest.mark.parametrize("c", CONFIGS, ids=IDS)
def test_nsa_attention_forward(c):
    q, k, v, gates = inputs(c, seed=2)
    kw = dict(l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"])
    o, idx, lses = nt.nsa_attention(q, k, v, *gates, return_indices=True, return_lse=True, **kw)
    assert idx.dtype == torch.int32 and idx.shape == (c["B"], c["T"], c["H"], c["n"])
    assert torch.equal(idx, indices_for(c, q, k))
    o_ref, lses_ref = R.nsa_attention(q.float(), k.float(), v.float(), *gates, indices=idx, return_lse=True, **kw)
    assert o.dtype == q.dtype
    assert rel_err(o, o_ref) < TOL
    for got, want in zip(lses, lses_ref):
        assert rel_err(got, want) < TOL


@pytest.mark.parametrize("c", CONFIGS[:2], ids=IDS[:2])
def test_nsa_attention_backward(c):
    for branch in ("compressed", "selected", "window"):
        need_backward(branch)
    q, k, v, gates = inputs(c, seed=3)
    kw = dict(l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"])
    q_, k_, v_ = leaf(q), leaf(k), leaf(v)
    g_ = [leaf(g) for g in gates]
    o, idx = nt.nsa_attention(q_, k_, v_, *g_, return_indices=True, **kw)
    dout = torch.randn_like(o)
    o.backward(dout)
    qr, kr, vr = ref32(q, k, v)
    gr = [leaf(g) for g in gates]
    R.nsa_attention(qr, kr, vr, *gr, indices=idx, **kw).backward(dout.float())
    for name, got, want in (("dq", q_.grad, qr.grad), ("dk", k_.grad, kr.grad), ("dv", v_.grad, vr.grad)):
        assert rel_err(got, want) < TOL, name
    for i, (a, b) in enumerate(zip(g_, gr)):
        assert rel_err(a.grad, b.grad) < TOL, f"gate {i}"


def test_strided_views_and_short_sequences():
    c = CONFIGS[0]
    B, T, H, G, D = 1, 150, 2, 4, 64
    qkv = torch.randn(B, T, H * G + 2 * H, D, device="cuda").to(torch.bfloat16)
    q, k, v = qkv[:, :, : H * G], qkv[:, :, H * G: H * G + H], qkv[:, :, H * G + H:]
    assert not q.is_contiguous()
    out, lse = nt.window_attention(q, k, v, w=40, return_lse=True)
    o_ref, l_ref = R.window_attention(q.float(), k.float(), v.float(), w=40)
    assert rel_err(out, o_ref) < TOL and rel_err(lse, l_ref) < TOL
    # T < l: no compressed token, zero output and -inf lse
    qs = q[:, :20].contiguous()
    empty = torch.zeros(B, 0, H, D, device="cuda", dtype=torch.bfloat16)
    out, lse = nt.compressed_attention(qs, empty, empty, l=32, d=16, return_lse=True)
    assert (out == 0).all() and torch.isneginf(lse).all()
    del c


def test_context_is_cached_per_device():
    assert nt.context() is nt.context(torch.device("cuda", torch.cuda.current_device()))
    info = nt.context().device_info()
    assert "device" in info


def test_launch_errors_surface_as_nsajit_errors():
    # A view whose outer stride is not a multiple of 8 is copied, so the kernel still runs...
    q = torch.randn(1, 64, 4, 68, device="cuda").to(torch.bfloat16)[..., :64]
    k = torch.randn(1, 64, 1, 64, device="cuda").to(torch.bfloat16)
    out = nt.window_attention(q, k, k, w=8)
    assert rel_err(out, R.window_attention(q.float(), k.float(), k.float(), w=8)[0]) < TOL
    # ...while a config the kernels do not support is refused naming the field.
    q96 = torch.randn(1, 64, 4, 96, device="cuda").to(torch.bfloat16)
    k96 = torch.randn(1, 64, 1, 96, device="cuda").to(torch.bfloat16)
    with pytest.raises(nsajit.UnsupportedError, match="head_dim_qk"):
        nt.window_attention(q96, k96, k96, w=8)


# ---- compression on the pooling kernels -------------------------------------------------------

#: dweight is a float32 sum of exact products of bf16/fp16 values (no rounding to the dtype):
#: it must match the float64 reference far more closely than the dtype's TOL.
TOL_FP32 = 1e-3


def need_compress():
    if not nsajit.has_compress():
        pytest.skip(f"{nsajit.library().path} has no nsajit_compress_forward/backward")


def assert_rounded_once(got, ref, dtype, name, slack=1e-5):
    """Every element within 1 ulp of ``dtype`` (plus a float32-accumulation slack far below a
    bf16/fp16 ulp at these magnitudes) of the float64 result: the kernel accumulates in
    float32 and rounds once to the dtype."""
    got, ref = got.detach().double(), ref.detach().double()
    fi = torch.finfo(dtype)
    ulp = torch.exp2(torch.floor(torch.log2(ref.abs().clamp_min(fi.tiny)))) * fi.eps
    diff = (got - ref).abs()
    bad = diff > ulp + slack
    assert not bad.any(), (f"{name}: {int(bad.sum())} of {bad.numel()} elements further than 1 ulp of {dtype} from "
                           f"the float64 result (max diff {float(diff.max()):.3g})")


def pool_weights(l, seed, positive=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    if positive:
        return (torch.rand(l, device="cuda", generator=g) + 0.5) / l
    return torch.randn(l, device="cuda", generator=g) / math.sqrt(l)


COMPRESS_CASES = [(l, d, D, T, pool, torch.bfloat16) for (l, d) in ((64, 64), (32, 16)) for D in (64, 128, 192)
                  for T in (100, 1000, 31) for pool in ("mean", "weighted")]
COMPRESS_CASES += [(32, 16, 128, T, pool, torch.float16) for T in (100, 31) for pool in ("mean", "weighted")]
COMPRESS_IDS = [f"l{l}d{d}-D{D}-T{T}-{pool}-{'bf16' if dt == torch.bfloat16 else 'fp16'}"
                for (l, d, D, T, pool, dt) in COMPRESS_CASES]


@pytest.mark.parametrize("l,d,D,T,pool,dtype", COMPRESS_CASES, ids=COMPRESS_IDS)
def test_compress(l, d, D, T, pool, dtype):
    """Forward and backward (dx, dweight) of the pooling kernels against the float64 reference
    (B = 2, H = 2); T = 31 < l: empty output, zero gradients, nothing launched."""
    need_compress()
    B, H = 2, 2
    g = torch.Generator(device="cuda").manual_seed(T * 1000 + l + D)
    x = torch.randn(B, T, H, D, device="cuda", generator=g).to(dtype)
    w = pool_weights(l, seed=l + D) if pool == "weighted" else None
    x_ = leaf(x)
    w_ = leaf(w) if w is not None else None
    out = nt.compress(x_, l=l, d=d, pool=pool, weight=w_)
    tc = R.num_compressed(T, l, d)
    assert out.dtype == dtype and out.shape == (B, tc, H, D)
    dout = torch.randn(B, tc, H, D, device="cuda", generator=g).to(dtype)
    out.backward(dout)
    assert x_.grad.dtype == dtype and x_.grad.shape == x.shape
    if w_ is not None:
        assert w_.grad.dtype == torch.float32 and w_.grad.shape == (l,)
    if tc == 0:
        assert (x_.grad == 0).all()
        assert w_ is None or (w_.grad == 0).all()
        return
    xr = leaf(x.double())
    wr = leaf(w.double()) if w is not None else None
    ref = R.compress(xr, l=l, d=d, pool=pool, weight=wr)
    ref.backward(dout.double())
    errors = {"out": rel_err(out, ref), "dx": rel_err(x_.grad, xr.grad)}
    assert all(e < TOL for e in errors.values()), errors
    assert_rounded_once(out, ref, dtype, "out")
    assert_rounded_once(x_.grad, xr.grad, dtype, "dx")
    if w is not None:
        err = rel_err(w_.grad, wr.grad)
        assert err < TOL_FP32, f"dweight rel err {err}"
    # tokens after the last block (T = 100: 64.. for l = d = 64, 96.. for l = 32, d = 16) get exactly 0
    covered = (tc - 1) * d + l
    assert (x_.grad[:, covered:] == 0).all()


def test_compress_strided_views_and_layouts():
    """k as a view of a packed [B, T, 2H, D] tensor (strided), a float64 weight (cast to
    float32 for the kernels, its gradient cast back), and a non-contiguous incoming gradient."""
    need_compress()
    B, T, H, D, l, d = 2, 300, 2, 128, 32, 16
    kv = torch.randn(B, T, 2 * H, D, device="cuda").to(torch.bfloat16)
    kv_ = leaf(kv)
    k = kv_[:, :, :H]
    assert not k.is_contiguous()
    w = leaf(pool_weights(l, seed=7).double())
    out = nt.compress(k, l=l, d=d, pool="weighted", weight=w)
    tc = R.num_compressed(T, l, d)
    dout = torch.randn(B, H, tc, D, device="cuda").to(torch.bfloat16).transpose(1, 2)  # [B, Tc, H, D], strided
    assert not dout.is_contiguous()
    out.backward(dout)
    kvr = leaf(kv.double())
    wr = leaf(w)
    ref = R.compress(kvr[:, :, :H], l=l, d=d, pool="weighted", weight=wr)
    ref.backward(dout.double())
    assert w.grad.dtype == torch.float64
    assert rel_err(out, ref) < TOL
    assert rel_err(kv_.grad[:, :, :H], kvr.grad[:, :, :H]) < TOL
    assert (kv_.grad[:, :, H:] == 0).all()
    assert rel_err(w.grad, wr.grad) < TOL_FP32


NSA_CMP_CASES = [(c, pool, False) for c in CONFIGS for pool in ("mean", "weighted")] + [(CONFIGS[0], "weighted", True)]
NSA_CMP_IDS = [f"{IDS[CONFIGS.index(c)]}-{pool}{'-own_kv' if own else ''}" for c, pool, own in NSA_CMP_CASES]


@pytest.mark.parametrize("c,pool,own_kv", NSA_CMP_CASES, ids=NSA_CMP_IDS)
def test_nsa_attention_kernel_compression(c, pool, own_kv):
    """nsa_attention(compression='kernel') against the reference layer (float32): o and the
    gradients of q, k, v (and k_cmp, v_cmp when the compressed branch has its own), the
    gates and pool_weight."""
    for branch in ("compressed", "selected", "window"):
        need_backward(branch)
    need_compress()
    q, k, v, gates = inputs(c, seed=4)
    kw = dict(l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"], pool=pool)
    w = pool_weights(c["l"], seed=5, positive=True) if pool == "weighted" else None
    extra = {}
    if own_kv:
        _, kc_raw, vc_raw, _ = inputs(c, seed=6)
        extra = dict(k_cmp=kc_raw, v_cmp=vc_raw)
    q_, k_, v_ = leaf(q), leaf(k), leaf(v)
    g_ = [leaf(g) for g in gates]
    w_ = leaf(w) if w is not None else None
    extra_ = {name: leaf(t) for name, t in extra.items()}
    o, idx = nt.nsa_attention(q_, k_, v_, *g_, pool_weight=w_, compression="kernel", return_indices=True,
                              **extra_, **kw)
    dout = torch.randn_like(o)
    o.backward(dout)
    qr, kr, vr = ref32(q, k, v)
    gr = [leaf(g) for g in gates]
    wr = leaf(w) if w is not None else None
    extra_r = {name: leaf(t.float()) for name, t in extra.items()}
    o_ref = R.nsa_attention(qr, kr, vr, *gr, pool_weight=wr, indices=idx, **extra_r, **kw)
    o_ref.backward(dout.float())
    errors = {"o": rel_err(o, o_ref), "dq": rel_err(q_.grad, qr.grad), "dk": rel_err(k_.grad, kr.grad),
              "dv": rel_err(v_.grad, vr.grad)}
    for i, (a, b) in enumerate(zip(g_, gr)):
        errors[f"dgate{i}"] = rel_err(a.grad, b.grad)
    for name in extra:
        errors[f"d{name}"] = rel_err(extra_[name].grad, extra_r[name].grad)
    if w is not None:
        assert w_.grad.dtype == torch.float32
        errors["dpool_weight"] = rel_err(w_.grad, wr.grad)
    bad = {key: e for key, e in errors.items() if not e < TOL}
    assert not bad, f"relative errors over {TOL}: {bad} (all: {errors})"
    # the PyTorch compression path gives the same layer up to float32 summation order
    o_torch = nt.nsa_attention(q, k, v, *gates, pool_weight=w, compression="reference", indices=idx, **extra, **kw)
    assert rel_err(o.detach(), o_torch) < TOL


@pytest.mark.parametrize("pool", ["mean", "weighted"])
def test_nsa_attention_kernel_compression_short(pool):
    """T < l: no compressed token. The compressed branch gives 0, the compression launches
    nothing, k, v and pool_weight still get the other branches' (and zero) gradients."""
    for branch in ("compressed", "selected", "window"):
        need_backward(branch)
    need_compress()
    c = dict(CONFIGS[0], T=20)
    q, k, v, gates = inputs(c, seed=8)
    kw = dict(l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"], pool=pool)
    w = pool_weights(c["l"], seed=9, positive=True) if pool == "weighted" else None
    q_, k_, v_ = leaf(q), leaf(k), leaf(v)
    w_ = leaf(w) if w is not None else None
    o, idx = nt.nsa_attention(q_, k_, v_, *gates, pool_weight=w_, return_indices=True, **kw)
    dout = torch.randn_like(o)
    o.backward(dout)
    qr, kr, vr = ref32(q, k, v)
    o_ref = R.nsa_attention(qr, kr, vr, *gates, pool_weight=leaf(w) if w is not None else None, indices=idx, **kw)
    o_ref.backward(dout.float())
    assert rel_err(o, o_ref) < TOL
    for name, got, want in (("dq", q_.grad, qr.grad), ("dk", k_.grad, kr.grad), ("dv", v_.grad, vr.grad)):
        assert rel_err(got, want) < TOL, name
    if w is not None:  # zero (Compress.backward of an empty output), or None should autograd skip it
        assert w_.grad is None or (w_.grad == 0).all()


# ---- the autotuner ------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["compressed", "selected", "window"])
def test_tune_records_a_tile_that_later_launches_use_and_that_computes_correctly(branch):
    """nt.tune times every tile, records the fastest in the database; a forward with
    default tiles then runs with that tile and still matches the reference."""
    c = dict(B=1, T=1500, H=2, G=8, Dk=128, Dv=128, dtype=torch.bfloat16, l=32, d=16, l_sel=64, n=4, w=200)
    seen = []
    res = nt.tune(branch, dk=c["Dk"], dv=c["Dv"], heads=c["H"], group=c["G"], l=c["l"], d=c["d"],
                  l_sel=c["l_sel"], n=c["n"], w=c["w"], seq_len=c["T"], batch=c["B"], repeats=3,
                  progress=lambda done, total, tile, ms: seen.append((done, total, tile, ms)))
    assert res["candidates"] == len(seen) >= 2
    assert seen[-1][0] == seen[-1][1] == res["candidates"]
    assert res["best_ms"] > 0 and res["candidates"] > res["failed"]
    assert res["best_ms"] <= res["default_ms"] or res["default_ms"] < 0
    kw = {"compressed": dict(l=c["l"], d=c["d"]), "selected": dict(l_sel=c["l_sel"], n=c["n"]),
          "window": dict(w=c["w"])}[branch]
    b = {"compressed": nsajit.Branch.COMPRESSED, "selected": nsajit.Branch.SELECTED,
         "window": nsajit.Branch.WINDOW}[branch]
    cfg = nt._make_config(b, c["dtype"], c["Dk"], c["Dv"], c["H"], c["G"], **kw)
    tile = nt.context().tuned_tile(cfg, b, batch=c["B"], seq_len=c["T"])
    assert tile["tuned"] == 1, (tile, res)
    assert (tile["warps"], tile["tokens"], tile["kv_chunk"]) == (res["tile_warps"], res["tile_tokens"],
                                                                 res["tile_kv_chunk"])
    q, k, v, _ = inputs(c, seed=7)
    with torch.no_grad():
        idx = indices_for(c, q, k) if branch == "selected" else None
        (out, _), (k_used, v_used) = run_branch(branch, c, q, k, v, None, idx)
        ref, _ = ref_branch(branch, c, q.float(), k_used.float(), v_used.float(), idx)
    assert rel_err(out, ref) < TOL


@pytest.mark.parametrize("branch", ["compressed", "selected", "window"])
def test_tune_backward_records_a_split_that_later_backwards_use_and_that_computes_correctly(branch):
    """nt.tune(backward=True) also times the backward over the dK/dV split lengths and
    records the fastest; a backward afterwards takes it (tuned_backward_split) and its
    gradients still match the reference."""
    need_backward(branch)
    c = dict(B=1, T=3000, H=2, G=8, Dk=128, Dv=128, dtype=torch.bfloat16, l=32, d=16, l_sel=64, n=4, w=200)
    seen = []
    res = nt.tune(branch, dk=c["Dk"], dv=c["Dv"], heads=c["H"], group=c["G"], l=c["l"], d=c["d"],
                  l_sel=c["l_sel"], n=c["n"], w=c["w"], seq_len=c["T"], batch=c["B"], repeats=3, backward=True,
                  progress=lambda done, total, what, ms: seen.append((done, total, what, ms)))
    bwd = res["backward"]
    splits = [what for *_, what, _ in seen if what.startswith("split")]
    assert bwd["candidates"] == len(splits) >= 2, (bwd, seen)
    assert splits[0].startswith("split auto")
    assert bwd["best_ms"] > 0 and bwd["candidates"] > bwd["failed"]
    assert bwd["best_ms"] <= bwd["default_ms"] or bwd["default_ms"] < 0
    assert bwd["splits"] >= 1 and bwd["default_splits"] >= 1
    kw = {"compressed": dict(l=c["l"], d=c["d"]), "selected": dict(l_sel=c["l_sel"], n=c["n"]),
          "window": dict(w=c["w"])}[branch]
    b = {"compressed": nsajit.Branch.COMPRESSED, "selected": nsajit.Branch.SELECTED,
         "window": nsajit.Branch.WINDOW}[branch]
    cfg = nt._make_config(b, c["dtype"], c["Dk"], c["Dv"], c["H"], c["G"], **kw)
    split = nt.context().tuned_backward_split(cfg, b, batch=c["B"], seq_len=c["T"])
    assert split == {"split_tokens": bwd["split_tokens"], "tuned": 1}, (split, bwd)
    test_branch_backward(branch, c, gated=True)


# ---- preparing a configuration ------------------------------------------------------------


def test_prepare_loads_every_kernel_that_nsa_attention_then_uses():
    """nt.prepare compiles and loads (in parallel) every kernel of the configuration; a
    forward + backward of nsa_attention afterwards compiles and loads nothing."""
    c = dict(B=1, T=300, H=3, G=2, Dk=64, Dv=64, dtype=torch.bfloat16, l=48, d=16, l_sel=32, n=3, w=37)
    seen = []
    n = nt.prepare(dk=c["Dk"], dv=c["Dv"], heads=c["H"], group=c["G"], l=c["l"], d=c["d"], l_sel=c["l_sel"],
                   n=c["n"], w=c["w"], progress=lambda done, total, kernel, s: seen.append((done, total, kernel, s)))
    # 3 forward + the gated combination + 3 x 3 backward + top-n + pool and pool_bwd (Dk = Dv).
    assert n == 16 == len(seen)
    assert sorted(done for done, *_ in seen) == list(range(1, 17))
    assert all(s >= 0 for *_, s in seen)
    before = nt.context().cache_stats()
    q, k, v, gates = inputs(c, seed=11)
    q_, k_, v_ = leaf(q), leaf(k), leaf(v)
    o = nt.nsa_attention(q_, k_, v_, *gates, l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"])
    o.backward(torch.randn_like(o))
    torch.cuda.synchronize()
    after = nt.context().cache_stats()
    assert after["modules_loaded"] == before["modules_loaded"], (before, after)
    assert after["compiles"] == before["compiles"], (before, after)


def test_selected_backward_has_the_same_bits_with_and_without_the_selection_map():
    """bwd_dkdv walks the tokens that selected a block from the selection map, or (limit 0, or
    a map past the limit) from the index lists: the same tokens in the same order."""
    need_backward("selected")
    c = dict(CONFIGS[0], T=700)
    q, k, v, gates = inputs(c, seed=3)
    idx = indices_for(c, q, k)
    dout = None
    grads = []
    ctx = nt.context()
    try:
        for limit in (512 << 20, 0):
            ctx.set_selection_map_limit(limit)
            q_, k_, v_, g_ = leaf(q), leaf(k), leaf(v), leaf(gates[1])
            (out, _), _ = run_branch("selected", c, q_, k_, v_, g_, idx)
            if dout is None:
                dout = torch.randn_like(out)
            out.backward(dout)
            grads.append((q_.grad, k_.grad, v_.grad, g_.grad))
    finally:
        ctx.set_selection_map_limit(512 << 20)
    for name, a, b in zip(("dq", "dk", "dv", "dgate"), *grads):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="nbytes"):
        ctx.set_selection_map_limit(-1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("Dv", [64, 128, 192, 256])
def test_gated_combine_kernel_has_the_bits_of_the_float32_formula(dtype, Dv):
    """nsajit_gated_combine against _gated + _BranchSum (each gated term rounded to the dtype,
    the float32 sum rounded once), bit for bit; one gate absent, one output a strided view."""
    if not nsajit.has_gated_combine():
        pytest.skip(f"{nsajit.library().path} has no nsajit_gated_combine")
    B, T, H, G = 2, 77, 2, 4
    g = torch.Generator(device="cuda").manual_seed(Dv)
    outs = [torch.randn(B, T, H * G, Dv, device="cuda", generator=g).to(dtype) for _ in range(3)]
    wide = torch.randn(B, T, H * G, Dv + 64, device="cuda", generator=g).to(dtype)
    outs[1] = wide[..., 32:32 + Dv]  # rows 16-byte aligned, not contiguous
    gates = [torch.rand(B, T, H * G, device="cuda", generator=g) * 2 - 0.5 for _ in range(3)]
    gates[2] = None
    cfg = nt._make_config(nsajit.Branch.WINDOW, dtype, Dv, Dv, H, G, w=64)
    got = nt._gated_combine(cfg, outs, gates)
    want = nt._BranchSum.apply(*(nt._gated(o, gt) for o, gt in zip(outs, gates)))
    assert got.dtype == dtype and got.shape == want.shape
    assert torch.equal(got, want)
