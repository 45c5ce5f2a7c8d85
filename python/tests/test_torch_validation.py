"""nsajit.torch checks its inputs before touching a GPU: these run on CPU tensors."""

import pytest
import torch

import nsajit
import nsajit.torch as nt
from nsajit import reference as R

BF16 = torch.bfloat16


def make(B=2, T=96, H=2, G=2, Dk=64, Dv=64, dtype=BF16, Tkv=None):
    Tkv = T if Tkv is None else Tkv
    q = torch.randn(B, T, H * G, Dk).to(dtype)
    k = torch.randn(B, Tkv, H, Dk).to(dtype)
    v = torch.randn(B, Tkv, H, Dv).to(dtype)
    return q, k, v


def gates(B=2, T=96, HQ=4, value=0.5):
    return [torch.full((B, T, HQ), value) for _ in range(3)]


NSA = dict(l=32, d=16, l_sel=32, n=4, w=32)


# ---------------------------------------------------------------- dtypes


def test_float32_is_rejected_naming_dtypes():
    q, k, v = make(dtype=torch.float32)
    with pytest.raises(TypeError, match=r"q has dtype torch.float32.*bfloat16 or torch.float16"):
        nt.window_attention(q, k, v, w=16)


def test_mixed_dtypes_are_rejected_naming_the_tensor():
    q, k, v = make()
    with pytest.raises(TypeError, match="v has dtype torch.float16 but q has torch.bfloat16"):
        nt.window_attention(q, k, v.half(), w=16)
    with pytest.raises(TypeError, match="k has dtype"):
        nt.nsa_attention(q, k.float(), v, *gates(), **NSA)


def test_non_tensor_argument():
    q, k, v = make()
    with pytest.raises(TypeError, match="k must be a torch.Tensor"):
        nt.window_attention(q, [1, 2], v, w=4)


# ---------------------------------------------------------------- shapes


def test_wrong_shapes_name_tensor_and_expected_shape():
    q, k, v = make()
    with pytest.raises(ValueError, match=r"k has shape \[2, 96, 2, 128\], expected \[B=2, T=96, H, Dk=64\]"):
        nt.window_attention(q, torch.zeros(2, 96, 2, 128, dtype=BF16), v, w=4)
    with pytest.raises(ValueError, match=r"v has shape \[2, 96, 3, 64\], expected \[B=2, T=96, H=2, Dv\]"):
        nt.window_attention(q, k, torch.zeros(2, 96, 3, 64, dtype=BF16), w=4)
    with pytest.raises(ValueError, match=r"q has shape \[96, 4, 64\], expected \[B, T, HQ, Dk\]"):
        nt.window_attention(q[0], k, v, w=4)
    with pytest.raises(ValueError, match=r"k has shape \[2, 95, 2, 64\]"):
        nt.selected_attention(q, k[:, :95], v, torch.zeros(2, 96, 2, 4, dtype=torch.int32), l_sel=32)


def test_group_must_divide():
    q, k, v = make(H=2, G=2)
    k3 = torch.zeros(2, 96, 3, 64, dtype=BF16)
    with pytest.raises(ValueError, match="HQ = 4 .* H = 3"):
        nt.window_attention(q, k3, torch.zeros(2, 96, 3, 64, dtype=BF16), w=4)


def test_compressed_kv_must_have_tc_tokens():
    q, _, _ = make(T=96)
    tc = R.num_compressed(96, 32, 16)  # 5
    kc = torch.zeros(2, tc + 1, 2, 64, dtype=BF16)
    with pytest.raises(ValueError, match=r"k_cmp has shape \[2, 6, 2, 64\], expected \[B=2, Tc=5, H, Dk=64\]"):
        nt.compressed_attention(q, kc, kc, l=32, d=16)
    with pytest.raises(ValueError, match="bad compression"):
        nt.compressed_attention(q, kc, kc, l=32, d=24)


def test_gate_shape_and_dtype():
    q, k, v = make()
    with pytest.raises(ValueError, match=r"gate has shape \[2, 96\], expected \[B=2, T=96, HQ=4\]"):
        nt.window_attention(q, k, v, torch.zeros(2, 96), w=4)
    with pytest.raises(TypeError, match="gate has dtype torch.int64"):
        nt.window_attention(q, k, v, torch.zeros(2, 96, 4, dtype=torch.int64), w=4)
    g = gates()
    g[1] = g[1][:, :, :2]
    with pytest.raises(ValueError, match="g_slc has shape"):
        nt.nsa_attention(q, k, v, *g, **NSA)


def test_indices_checks():
    q, k, v = make()
    good = torch.zeros(2, 96, 2, 4, dtype=torch.int32)
    with pytest.raises(TypeError, match="indices has dtype torch.int64; it must be torch.int32"):
        nt.selected_attention(q, k, v, good.long(), l_sel=32)
    with pytest.raises(TypeError, match="indices has dtype torch.float32"):
        nt.selected_attention(q, k, v, good.float().requires_grad_(True), l_sel=32)
    with pytest.raises(ValueError, match=r"indices has shape \[2, 96, 1, 4\], expected \[B=2, T=96, H=2, n\]"):
        nt.selected_attention(q, k, v, good[:, :, :1], l_sel=32)
    with pytest.raises(ValueError, match="indices: the last dimension must be contiguous"):
        nt.selected_attention(q, k, v, torch.zeros(2, 96, 2, 8, dtype=torch.int32)[..., ::2], l_sel=32)
    with pytest.raises(ValueError, match=r"expected \[B=2, T=96, H=2, n=4\]"):
        nt.nsa_attention(q, k, v, *gates(), indices=torch.zeros(2, 96, 2, 5, dtype=torch.int32), **NSA)


def test_indices_requiring_grad_are_rejected():
    # int32 tensors cannot require grad in torch; a view that claims to still must be refused.
    class FakeGrad(torch.Tensor):
        @property
        def requires_grad(self):
            return True

    q, k, v = make()
    idx = torch.zeros(2, 96, 2, 4, dtype=torch.int32).as_subclass(FakeGrad)
    with pytest.raises(ValueError, match="indices requires grad"):
        nt.selected_attention(q, k, v, idx, l_sel=32)


# ---------------------------------------------------------------- layout


def test_innermost_dimension_must_be_contiguous():
    q, k, v = make()
    kt = torch.zeros(2, 96, 64, 2, dtype=BF16).transpose(2, 3)  # [2, 96, 2, 64], stride(-1) = 2
    with pytest.raises(ValueError, match=r"k: the last dimension must be contiguous \(stride 1\).*contiguous\(\)"):
        nt.window_attention(q, kt, v, w=4)


def test_kernel_layout_copies_only_misaligned_tensors():
    base = torch.zeros(2 * 96 * 2 * 64 + 8, dtype=BF16)
    aligned = base[: 2 * 96 * 2 * 64].view(2, 96, 2, 64)
    assert nt._kernel_layout(aligned) is aligned
    qkv = torch.zeros(2, 96, 2, 3 * 64, dtype=BF16)
    k = qkv[..., 64:128]  # strided view, 16-byte aligned, strides multiples of 8: passed as is
    assert nt._kernel_layout(k) is k
    shifted = base[1: 1 + 2 * 96 * 2 * 64].view(2, 96, 2, 64)  # 2-byte offset
    out = nt._kernel_layout(shifted)
    assert out is not shifted and out.is_contiguous() and torch.equal(out, shifted)
    odd = torch.zeros(2, 96, 2, 68, dtype=BF16)[..., :64]  # stride 68: not a multiple of 8
    assert nt._kernel_layout(odd) is not odd


def test_views_carry_strides_in_elements():
    qkv = torch.zeros(2, 96, 2, 3 * 64, dtype=BF16)
    k = qkv[..., 64:128]
    view = nt._view(k).contents
    assert (view.stride_batch, view.stride_token, view.stride_head) == (96 * 2 * 192, 2 * 192, 192)
    assert view.data == k.data_ptr()
    lse = torch.zeros(2, 96, 4)
    v3 = nt._view(lse).contents
    assert (v3.stride_batch, v3.stride_token, v3.stride_head) == (384, 4, 1)
    assert nt._view(None) is None


# ---------------------------------------------------------------- gates in [0, 1]


@pytest.mark.parametrize("bad", [-0.01, 1.5, float("nan")])
def test_gates_out_of_range(bad):
    q, k, v = make()
    g = gates()
    g[2][1, 5, 3] = bad
    with pytest.raises(ValueError, match=r"g_swa has values outside \[0, 1\].*check_gate_range=False"):
        nt.nsa_attention(q, k, v, *g, **NSA)
    with pytest.raises(ValueError, match=r"gate has values outside \[0, 1\]"):
        nt.window_attention(q, k, v, g[2], w=4)
    # without the range check the next error is the device
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        nt.window_attention(q, k, v, g[2], w=4, check_gate_range=False)


def test_gates_at_the_bounds_pass():
    q, k, v = make()
    g = gates()
    g[0].fill_(0.0)
    g[1].fill_(1.0)
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        nt.nsa_attention(q, k, v, *g, **NSA)


# ---------------------------------------------------------------- configuration, then device


def test_unsupported_config_is_reported_on_cpu():
    q, k, v = make(Dk=96, Dv=96)
    with pytest.raises(nsajit.UnsupportedError, match=r"head_dim_qk \(Dk\) = 96"):
        nt.window_attention(q, k, v, w=4)
    q, k, v = make(H=1, G=3)
    with pytest.raises(nsajit.UnsupportedError, match=r"group \(G\) = 3"):
        nt.window_attention(q, k, v, w=4)
    q, k, v = make()
    with pytest.raises(nsajit.UnsupportedError, match="selection block l' = 48"):
        nt.selected_attention(q, k, v, torch.zeros(2, 96, 2, 4, dtype=torch.int32), l_sel=48)


def test_bad_parameters():
    q, k, v = make()
    with pytest.raises(ValueError, match="window w = 0"):
        nt.window_attention(q, k, v, w=0)
    with pytest.raises(ValueError, match="scale"):
        nt.window_attention(q, k, v, w=4, scale=-1.0)
    with pytest.raises(ValueError, match="num_initial"):
        nt.nsa_attention(q, k, v, *gates(), **dict(NSA, n=2))
    with pytest.raises(ValueError, match="l_sel = 24 must be a positive multiple of d = 16"):
        nt.nsa_attention(q, k, v, *gates(), **dict(NSA, l_sel=24))
    with pytest.raises(ValueError, match="pool"):
        nt.nsa_attention(q, k, v, *gates(), pool="max", **NSA)
    with pytest.raises(ValueError, match="pool_weight"):
        nt.nsa_attention(q, k, v, *gates(), pool="weighted", **NSA)
    with pytest.raises(ValueError, match="is not given"):
        nt.nsa_attention(q, None, None, *gates(), **NSA)


@pytest.mark.parametrize("branch", ["compressed", "selected", "window", "nsa"])
def test_cpu_tensors_need_cuda(branch):
    q, k, v = make()
    g = gates()
    with pytest.raises(ValueError, match=r"q must be a CUDA tensor \(got device cpu\)"):
        if branch == "compressed":
            kc = R.compress(k.float(), l=32, d=16).to(BF16)
            nt.compressed_attention(q, kc, kc, g[0], l=32, d=16)
        elif branch == "selected":
            nt.selected_attention(q, k, v, torch.zeros(2, 96, 2, 4, dtype=torch.int32), g[1], l_sel=32)
        elif branch == "window":
            nt.window_attention(q, k, v, g[2], w=32)
        else:
            nt.nsa_attention(q, k, v, *g, **NSA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: mixed-device check needs one")
def test_mixed_devices():
    q, k, v = make()
    with pytest.raises(ValueError, match="k must be a CUDA tensor"):
        nt.window_attention(q.cuda(), k, v.cuda(), w=4)


# ---------------------------------------------------------------- fused top-n (select_topn)


def topn_inputs(B=2, T=96, H=2, G=2, Dk=64, l=32, d=16):
    q = torch.randn(B, T, H * G, Dk).to(BF16)
    kc = torch.randn(B, R.num_compressed(T, l, d), H, Dk).to(BF16)
    lse = torch.zeros(B, T, H * G)
    return q, kc, lse


TOPN = dict(l=32, d=16, l_sel=32, n=4)


def test_select_topn_dtypes():
    q, kc, lse = topn_inputs()
    with pytest.raises(TypeError, match=r"q has dtype torch.float32"):
        nt.select_topn(q.float(), kc, lse, **TOPN)
    with pytest.raises(TypeError, match="k_cmp has dtype torch.float16 but q has torch.bfloat16"):
        nt.select_topn(q, kc.half(), lse, **TOPN)
    with pytest.raises(TypeError, match=r"lse_cmp has dtype torch.bfloat16; it must be torch.float32"):
        nt.select_topn(q, kc, lse.to(BF16), **TOPN)
    with pytest.raises(TypeError, match="n must be an int"):
        nt.select_topn(q, kc, lse, **dict(TOPN, n=4.0))


def test_select_topn_shapes():
    q, kc, lse = topn_inputs()
    with pytest.raises(ValueError, match=r"k_cmp has shape \[2, 6, 2, 64\], expected \[B=2, Tc=5, H, Dk=64\]"):
        nt.select_topn(q, torch.zeros(2, 6, 2, 64, dtype=BF16), lse, **TOPN)
    with pytest.raises(ValueError, match=r"lse_cmp has shape \[2, 96, 2\], expected \[B=2, T=96, HQ=4\]"):
        nt.select_topn(q, kc, lse[..., :2], **TOPN)
    with pytest.raises(ValueError, match="HQ = 4 .* H = 3"):
        nt.select_topn(q, torch.zeros(2, 5, 3, 64, dtype=BF16), lse, **TOPN)
    with pytest.raises(ValueError, match="last dimension must be contiguous"):
        nt.select_topn(q.transpose(2, 3).contiguous().transpose(2, 3), kc, lse, **TOPN)


def test_select_topn_parameters():
    q, kc, lse = topn_inputs()
    with pytest.raises(ValueError, match="bad compression"):
        nt.select_topn(q, kc, lse, **dict(TOPN, d=24))
    with pytest.raises(ValueError, match="l_sel = 24 must be a positive multiple of d = 16"):
        nt.select_topn(q, kc, lse, **dict(TOPN, l_sel=24))
    with pytest.raises(ValueError, match="initial = 3, local = 2"):
        nt.select_topn(q, kc, lse, initial=3, local=2, **TOPN)
    with pytest.raises(ValueError, match="scale"):
        nt.select_topn(q, kc, lse, scale=0.0, **TOPN)
    # valid in Python, refused by the kernel's rules on the CPU (nsajit_kernel_query2, pass TOPN)
    with pytest.raises(nsajit.UnsupportedError, match="selection block l' = 48"):
        nt.select_topn(q, kc, lse, **dict(TOPN, l_sel=48))
    q3 = torch.randn(2, 96, 3, 64).to(BF16)
    with pytest.raises(nsajit.UnsupportedError, match=r"group \(G\) = 3"):
        nt.select_topn(q3, kc[:, :, :1], torch.zeros(2, 96, 3), **TOPN)


def test_select_topn_needs_cuda():
    q, kc, lse = topn_inputs()
    with pytest.raises(ValueError, match=r"q must be a CUDA tensor \(got device cpu\)"):
        nt.select_topn(q, kc, lse, **TOPN)


def test_nsa_attention_selection_argument():
    q, k, v = make()
    with pytest.raises(ValueError, match="selection = 'dense' is unknown"):
        nt.nsa_attention(q, k, v, *gates(), selection="dense", **NSA)
    # both selections validate everything, then need CUDA
    for selection in ("fused", "reference"):
        with pytest.raises(ValueError, match="must be a CUDA tensor"):
            nt.nsa_attention(q, k, v, *gates(), selection=selection, **NSA)
    # the fused selection's kernel rules are checked on the CPU too (num_initial + num_local <= n is
    # Python's; l_sel = 48 is the kernels')
    with pytest.raises(nsajit.UnsupportedError, match="selection block l' = 48"):
        nt.nsa_attention(q, k, v, *gates(), **dict(NSA, l_sel=48))


# ---------------------------------------------------------------- compression (compress)


def kv(B=2, T=96, H=2, D=64, dtype=BF16):
    return torch.randn(B, T, H, D).to(dtype)


def test_compress_dtypes():
    x = kv()
    with pytest.raises(TypeError, match=r"x has dtype torch.float32; nsajit's compression kernels take "
                                        r"torch.bfloat16 or torch.float16"):
        nt.compress(x.float(), l=32, d=16)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        nt.compress([1.0], l=32, d=16)
    with pytest.raises(TypeError, match=r"weight has dtype torch.int64; pooling weights must be floating point"):
        nt.compress(x, l=32, d=16, pool="weighted", weight=torch.ones(32, dtype=torch.int64))
    with pytest.raises(TypeError, match="l must be an int, got float"):
        nt.compress(x, l=32.0, d=16)
    with pytest.raises(TypeError, match="d must be an int, got bool"):
        nt.compress(x, l=32, d=True)


def test_compress_shapes():
    x = kv()
    with pytest.raises(ValueError, match=r"x has shape \[96, 2, 64\], expected \[B, T, H, dim\]"):
        nt.compress(x[0], l=32, d=16)
    with pytest.raises(ValueError, match=r"weight has shape \[16\], expected \[l=32\]"):
        nt.compress(x, l=32, d=16, pool="weighted", weight=torch.ones(16))
    with pytest.raises(ValueError, match=r"weight has shape \[1, 32\], expected \[l=32\]"):
        nt.compress(x, l=32, d=16, pool="weighted", weight=torch.ones(1, 32))
    with pytest.raises(ValueError, match="x: the last dimension must be contiguous"):
        nt.compress(torch.zeros(2, 96, 64, 2, dtype=BF16).transpose(2, 3), l=32, d=16)


def test_compress_dim_must_be_a_kernel_dim():
    with pytest.raises(nsajit.UnsupportedError, match=r"x has head dim 96; .*64, 128, 192 or 256"):
        nt.compress(kv(D=96), l=32, d=16)
    with pytest.raises(nsajit.UnsupportedError, match="x has head dim 32"):
        nt.compress(kv(D=32), l=32, d=16)


def test_compress_parameters():
    x = kv()
    with pytest.raises(ValueError, match="bad compression l = 32, d = 24"):
        nt.compress(x, l=32, d=24)
    with pytest.raises(ValueError, match="bad compression l = 16, d = 32"):
        nt.compress(x, l=16, d=32)
    with pytest.raises(ValueError, match="pool = 'max' is unknown; allowed: 'mean', 'weighted'"):
        nt.compress(x, l=32, d=16, pool="max")
    with pytest.raises(ValueError, match=r"pool='weighted' needs weight \[l\]"):
        nt.compress(x, l=32, d=16, pool="weighted")
    with pytest.raises(ValueError, match="weight is only used with pool='weighted'"):
        nt.compress(x, l=32, d=16, weight=torch.ones(32))
    # valid in Python, refused by the pooling kernels' rules on the CPU (nsajit_kernel_query2, pass POOL)
    if nsajit.has_compress():
        with pytest.raises(nsajit.UnsupportedError, match="l = 8192 .* l <= 4096"):
            nt.compress(x, l=8192, d=16)


def test_compress_needs_cuda():
    x = kv()
    with pytest.raises(ValueError, match=r"x must be a CUDA tensor \(got device cpu\)"):
        nt.compress(x, l=32, d=16)
    with pytest.raises(ValueError, match=r"x must be a CUDA tensor"):
        nt.compress(x, l=32, d=16, pool="weighted", weight=torch.ones(32, dtype=torch.float64))
    # T < l (Tc = 0) is validated the same way: nothing runs on the CPU
    with pytest.raises(ValueError, match=r"x must be a CUDA tensor"):
        nt.compress(kv(T=31), l=32, d=16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: mixed-device check needs one")
def test_compress_weight_on_another_device():
    with pytest.raises(ValueError, match="weight must be a CUDA tensor"):
        nt.compress(kv().cuda(), l=32, d=16, pool="weighted", weight=torch.ones(32))


def test_compress_config_shares_kernels_across_groups():
    cfg = nt._make_compress_config(BF16, 128, 4, 32, 16)
    assert (cfg.head_dim_qk, cfg.head_dim_v, cfg.num_kv_heads, cfg.cmp_block, cfg.cmp_stride) == (128, 128, 4, 32, 16)
    assert (cfg.group, cfg.scale, cfg.dtype) == (1, 0.0, nsajit.DType.BF16)
    assert nt._make_compress_config(torch.float16, 64, 1, 64, 64).dtype == nsajit.DType.FP16


def test_nsa_attention_compression_argument():
    q, k, v = make()
    with pytest.raises(ValueError, match="compression = 'pytorch' is unknown; allowed: 'kernel'.*'reference'"):
        nt.nsa_attention(q, k, v, *gates(), compression="pytorch", **NSA)
    # both compressions validate everything, then need CUDA
    for compression in ("kernel", "reference"):
        with pytest.raises(ValueError, match="q must be a CUDA tensor"):
            nt.nsa_attention(q, k, v, *gates(), compression=compression, **NSA)
        with pytest.raises(ValueError, match="q must be a CUDA tensor"):
            nt.nsa_attention(q, k, v, *gates(), compression=compression, pool="weighted",
                             pool_weight=torch.full((32,), 1 / 32), **NSA)
    # pool_weight: floating [l]
    with pytest.raises(TypeError, match="pool_weight has dtype torch.int32; pooling weights must be floating point"):
        nt.nsa_attention(q, k, v, *gates(), pool="weighted", pool_weight=torch.ones(32, dtype=torch.int32), **NSA)
    with pytest.raises(ValueError, match=r"pool_weight has shape \[16\], expected \[l=32\]"):
        nt.nsa_attention(q, k, v, *gates(), pool="weighted", pool_weight=torch.ones(16), **NSA)
    with pytest.raises(TypeError, match="pool_weight must be a torch.Tensor"):
        nt.nsa_attention(q, k, v, *gates(), pool="weighted", pool_weight=[1.0] * 32, **NSA)
    # with kc/vc given there is nothing to compress: pool_weight is not needed
    tc = R.num_compressed(96, 32, 16)
    kc = torch.zeros(2, tc, 2, 64, dtype=BF16)
    with pytest.raises(ValueError, match="q must be a CUDA tensor"):
        nt.nsa_attention(q, k, v, *gates(), kc=kc, vc=kc, pool="weighted", **NSA)


# ---------------------------------------------------------------- the gated combination


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gated_branch_sum_matches_the_float32_formula_bit_for_bit(dtype):
    """_gated / _BranchSum (fewer passes) give the bits of the documented formula: each gated
    branch output rounded to q's dtype, their float32 sum rounded to q's dtype; the gradient
    reaches each branch unchanged."""
    torch.manual_seed(0)
    outs = [torch.randn(2, 33, 4, 16).to(dtype) for _ in range(3)]
    gs = [torch.rand(2, 33, 4) for _ in range(3)]
    want_terms = [(o.float() * g.unsqueeze(-1)).to(dtype) for o, g in zip(outs, gs)]
    got_terms = [nt._gated(o, g) for o, g in zip(outs, gs)]
    for want, got in zip(want_terms, got_terms):
        assert got.dtype == dtype and torch.equal(got, want)
    want = (want_terms[0].float() + want_terms[1].float() + want_terms[2].float()).to(dtype)
    leaves = [t.clone().requires_grad_(True) for t in got_terms]
    got = nt._BranchSum.apply(*leaves)
    assert got.dtype == dtype and torch.equal(got, want)
    dout = torch.randn_like(got)
    got.backward(dout)
    for leaf in leaves:
        assert leaf.grad.dtype == dtype and torch.equal(leaf.grad, dout)


def test_shared_query_hands_out_views_and_sums_partial_gradients():
    """_SharedQuery gives each branch a view of q; the gradients meet in one sum. With fewer
    than three (a branch without a gradient) it adds them in PyTorch, without the library."""
    torch.manual_seed(0)
    q = torch.randn(1, 5, 4, 16, dtype=torch.bfloat16, requires_grad=True)
    q_c, q_s, q_w = nt._SharedQuery.apply(q, None)
    for view in (q_c, q_s, q_w):
        assert view.shape == q.shape and view.data_ptr() == q.data_ptr()
    d_c, d_s = torch.randn_like(q), torch.randn_like(q)
    (q_c * d_c.float()).sum().backward(retain_graph=True)
    (q_s * d_s.float()).sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.equal(q.grad, d_c + d_s)
