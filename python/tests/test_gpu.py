"""nsajit.torch on a GPU against nsajit.reference in float32 (bf16 tolerance: rel err 2e-2).

Skipped with a visible reason where there is no CUDA device; the backward tests are
skipped where the loaded libnsajit.so has no backward entry points yet.
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
    a, b = a.double(), b.double()
    fin = torch.isfinite(b)
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "infinities differ"
    assert not torch.isnan(a).any(), "NaN in the nsajit result"
    num = (a[fin] - b[fin]).norm()
    den = b[fin].norm()
    return 0.0 if num == 0 else float(num / den) if den > 0 else math.inf


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
