"""nsajit.reference against naive per-row implementations (CPU, float64)."""

import math

import pytest
import torch

from nsajit import reference as R

F64 = torch.float64


def rand(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64) * scale


def naive_rows(q, k, v, keys_for, scale=None):
    """Per (b, t, hq): softmax over the key positions keys_for(b, t, kvh) (a list, repeats
    allowed) like runtime/reference attendRow. Returns o, lse (float64)."""
    B, T, HQ, Dk = q.shape
    H, Dv = k.shape[2], v.shape[3]
    G = HQ // H
    scale = 1 / math.sqrt(Dk) if scale is None else scale
    o = torch.zeros(B, T, HQ, Dv, dtype=F64)
    lse = torch.full((B, T, HQ), -math.inf, dtype=F64)
    for b in range(B):
        for t in range(T):
            for kvh in range(H):
                keys = keys_for(b, t, kvh)
                if not keys:
                    continue
                kk = k[b, keys, kvh].to(F64)
                vv = v[b, keys, kvh].to(F64)
                for g in range(G):
                    hq = kvh * G + g
                    s = scale * (kk @ q[b, t, hq].to(F64))
                    mx = s.max()
                    p = torch.exp(s - mx)
                    o[b, t, hq] = (p @ vv) / p.sum()
                    lse[b, t, hq] = mx + torch.log(p.sum())
    return o, lse


def assert_close(a, b, tol=1e-10):
    assert a.shape == b.shape
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    fa, fb = a[torch.isfinite(b)], b[torch.isfinite(b)]
    assert not torch.isnan(a).any()
    assert torch.allclose(fa, fb, rtol=tol, atol=tol), (fa - fb).abs().max()


def qkv(B=2, T=37, H=2, G=3, Dk=8, Dv=6, Tkv=None, seed=1):
    Tkv = T if Tkv is None else Tkv
    return (rand(B, T, H * G, Dk, seed=seed), rand(B, Tkv, H, Dk, seed=seed + 1),
            rand(B, Tkv, H, Dv, seed=seed + 2))


# ---------------------------------------------------------------- window / causal


def test_window_at_least_t_equals_causal():
    q, k, v = qkv()
    T = q.shape[1]
    want_o, want_lse = naive_rows(q, k, v, lambda b, t, h: list(range(t + 1)))
    for w in (T, T + 5, 10 * T):
        o, lse = R.window_attention(q, k, v, w=w, chunk=8)
        assert_close(o, want_o)
        assert_close(lse, want_lse)
    o, lse = R.causal_attention(q, k, v)
    assert_close(o, want_o)


@pytest.mark.parametrize("w", [1, 2, 5, 16])
def test_small_windows_match_naive(w):
    q, k, v = qkv(seed=3)
    want_o, want_lse = naive_rows(q, k, v, lambda b, t, h: list(range(max(0, t - w + 1), t + 1)))
    o, lse = R.window_attention(q, k, v, w=w, chunk=7)
    assert_close(o, want_o)
    assert_close(lse, want_lse)


def test_window_one_copies_value_and_lse_is_score():
    q, k, v = qkv(G=1, Dk=4, Dv=4)
    o, lse = R.window_attention(q, k, v, w=1, scale=0.5)
    assert_close(o, v)
    assert_close(lse, 0.5 * (q * k).sum(-1))


def test_large_scores_stay_finite():
    q, k, v = qkv(seed=4)
    o, lse = R.window_attention(q * 1e3, k * 1e3, v, w=9)
    assert torch.isfinite(o).all() and torch.isfinite(lse).all()


def test_scale_argument():
    q, k, v = qkv(seed=5)
    o1, l1 = R.window_attention(q, k, v, w=7, scale=0.3)
    o2, l2 = R.window_attention(q * 0.3, k, v, w=7, scale=1.0)
    assert_close(o1, o2)
    assert_close(l1, l2)


# ---------------------------------------------------------------- selected


def test_selection_covering_all_blocks_equals_causal():
    q, k, v = qkv(T=45, seed=6)
    T, H = q.shape[1], k.shape[2]
    l_sel = 4
    nb = R.num_selection_blocks(T, l_sel)
    idx = torch.arange(nb, dtype=torch.int32).expand(2, T, H, nb).contiguous()
    o, lse = R.selected_attention(q, k, v, idx, l_sel=l_sel, chunk=10)
    want_o, want_lse = R.causal_attention(q, k, v)
    assert_close(o, want_o)
    assert_close(lse, want_lse)


def test_selected_invalid_indices_ignored_and_order_irrelevant():
    q, k, v = qkv(T=40, seed=7)
    B, T, H = 2, 40, 2
    l_sel, nb = 8, 5
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(-3, nb + 3, (B, T, H, 6), generator=g, dtype=torch.int32)
    o, lse = R.selected_attention(q, k, v, idx, l_sel=l_sel)

    def keys(b, t, h):
        out = []
        for j in idx[b, t, h].tolist():
            if 0 <= j < nb and j * l_sel <= t:
                out += [x for x in range(j * l_sel, min(T, (j + 1) * l_sel)) if x <= t]
        return out

    want_o, want_lse = naive_rows(q, k, v, keys)
    assert_close(o, want_o)
    assert_close(lse, want_lse)
    perm = idx[..., torch.randperm(6, generator=g)]
    o2, lse2 = R.selected_attention(q, k, v, perm, l_sel=l_sel)
    assert_close(o2, o)
    assert_close(lse2, lse)


def test_selected_duplicate_index_is_attended_twice():
    q, k, v = qkv(B=1, T=24, H=1, G=2, seed=8)
    l_sel = 8
    idx = torch.tensor([0, 0, 1, -1], dtype=torch.int32).expand(1, 24, 1, 4).contiguous()
    o, lse = R.selected_attention(q, k, v, idx, l_sel=l_sel)

    def keys(b, t, h):
        out = [x for x in range(0, 8) if x <= t] * 2
        if t >= 8:
            out += [x for x in range(8, 16) if x <= t]
        return out

    want_o, want_lse = naive_rows(q, k, v, keys)
    assert_close(o, want_o)
    assert_close(lse, want_lse)


def test_selected_row_without_keys_gives_zero_and_neg_inf():
    q, k, v = qkv(B=1, T=20, H=1, G=1, seed=9)
    idx = torch.full((1, 20, 1, 2), -1, dtype=torch.int32)
    idx[0, 10:, 0, 0] = 1  # block 1 = keys 4..7 with l_sel = 4: visible
    q.requires_grad_(True)
    o, lse = R.selected_attention(q, k, v, idx, l_sel=4)
    assert (o[0, :10] == 0).all() and torch.isinf(lse[0, :10]).all() and (lse[0, :10] < 0).all()
    assert torch.isfinite(o).all() and torch.isfinite(lse[0, 10:]).all()
    (o.sum() + lse[torch.isfinite(lse)].sum()).backward()
    assert torch.isfinite(q.grad).all()
    assert (q.grad[0, :10] == 0).all()


# ---------------------------------------------------------------- compressed


def test_compressed_l1_d1_with_raw_keys_equals_causal():
    q, k, v = qkv(seed=10)
    assert R.num_compressed(q.shape[1], 1, 1) == q.shape[1]
    o, lse = R.compressed_attention(q, k, v, l=1, d=1, chunk=5)
    want_o, want_lse = R.causal_attention(q, k, v)
    assert_close(o, want_o)
    assert_close(lse, want_lse)
    # and compressing with l = d = 1 is the identity
    assert_close(R.compress(k, l=1, d=1), k)


@pytest.mark.parametrize("l,d", [(4, 2), (6, 3), (8, 8), (5, 1)])
def test_compressed_matches_naive(l, d):
    T = 37
    tc = R.num_compressed(T, l, d)
    q, kc, vc = qkv(T=T, Tkv=tc, seed=11)
    o, lse = R.compressed_attention(q, kc, vc, l=l, d=d, chunk=9)
    want_o, want_lse = naive_rows(q, kc, vc, lambda b, t, h: [i for i in range(tc) if i * d + l - 1 <= t])
    assert_close(o, want_o)
    assert_close(lse, want_lse)
    # the first l - 1 queries see no complete block
    assert (o[:, : l - 1] == 0).all() and torch.isneginf(lse[:, : l - 1]).all()


def test_num_compressed_and_blocks():
    assert R.num_compressed(160, 32, 16) == 9
    assert R.num_compressed(31, 32, 16) == 0
    assert R.num_compressed(32, 32, 16) == 1
    assert R.num_compressed(47, 32, 16) == 1
    assert R.num_compressed(48, 32, 16) == 2
    assert R.num_selection_blocks(160, 64) == 3
    assert R.num_selection_blocks(128, 64) == 2
    with pytest.raises(ValueError):
        R.num_compressed(10, 24, 16)


def test_compressed_with_no_block_is_zero_without_nan_grad():
    q, kc, vc = qkv(T=10, Tkv=0, seed=12)
    q.requires_grad_(True)
    o, lse = R.compressed_attention(q, kc, vc, l=32, d=16)
    assert (o == 0).all() and torch.isneginf(lse).all()
    o.sum().backward()
    assert (q.grad == 0).all()


def test_compress_hand_values():
    B, T, H, D = 1, 8, 2, 2
    x = torch.zeros(B, T, H, D, dtype=F64)
    for t in range(T):
        for h in range(H):
            x[0, t, h, 0] = t
            x[0, t, h, 1] = 10 * t + 100 * h
    m = R.compress(x, l=4, d=2)  # blocks 0..3, 2..5, 4..7
    assert m.shape == (1, 3, 2, 2)
    assert m[0, :, 0, 0].tolist() == [1.5, 3.5, 5.5]
    assert m[0, :, 1, 1].tolist() == [115.0, 135.0, 155.0]
    w = torch.tensor([1.0, 0.0, 0.0, 2.0])
    c = R.compress(x, l=4, d=2, pool="weighted", weight=w)
    assert c[0, :, 0, 0].tolist() == [6.0, 12.0, 18.0]  # x[i*2] + 2 x[i*2 + 3]
    assert c[0, :, 1, 1].tolist() == [360.0, 420.0, 480.0]


def test_uniform_weights_equal_mean_pool():
    x = rand(2, 50, 3, 4, seed=13)
    assert_close(R.compress(x, l=8, d=4, pool="weighted", weight=torch.full((8,), 1 / 8)),
                 R.compress(x, l=8, d=4))
    assert R.compress(x[:, :5], l=8, d=4).shape == (2, 0, 3, 4)
    with pytest.raises(ValueError, match="weight"):
        R.compress(x, l=8, d=4, pool="weighted")
    with pytest.raises(ValueError, match="pool"):
        R.compress(x, l=8, d=4, pool="max")


def test_compressed_probabilities_consistent_with_lse():
    T, l, d = 50, 8, 4
    tc = R.num_compressed(T, l, d)
    q, kc, vc = qkv(T=T, Tkv=tc, seed=14)
    p = R.compressed_probabilities(q, kc, l=l, d=d)
    _, lse = R.compressed_attention(q, kc, vc, l=l, d=d)
    G = q.shape[2] // kc.shape[2]
    s = torch.einsum("bthd,bshd->bths", q, kc.repeat_interleave(G, dim=2)) / math.sqrt(q.shape[-1])
    t = torch.arange(T)[:, None]
    visible = (torch.arange(tc) * d + l - 1)[None, :] <= t
    want = torch.where(visible[None, :, None, :], torch.exp(s - lse[..., None]), torch.zeros(()))
    want = torch.nan_to_num(want, nan=0.0)
    assert_close(p, want)
    rows = p.sum(-1)
    assert_close(rows[:, l - 1:], torch.ones_like(rows[:, l - 1:]))
    assert (rows[:, : l - 1] == 0).all()


# ---------------------------------------------------------------- eq. 9 / 10


def test_block_importance_equal_sizes_reduce_to_pcmp():
    T = 64
    p = rand(1, T, 2, R.num_compressed(T, 8, 8), seed=15).abs()
    s = R.block_importance(p, l=8, d=8, l_sel=8)
    assert_close(s, p)


def test_block_importance_hand_worked_paper_config():
    # l=32, d=16, l'=64, T=160: Tc=9, NB=3; p_cmp[i] = 10^i shows each token's weight:
    #   eq. 9: p[4j] + 2p[4j-1] + 2p[4j-2] + 2p[4j-3] + p[4j-4]  (runtime/reference test)
    T, tc = 160, R.num_compressed(160, 32, 16)
    assert tc == 9 and R.num_selection_blocks(T, 64) == 3
    p = (10.0 ** torch.arange(tc, dtype=F64)).expand(1, T, 1, tc)
    s = R.block_importance(p, l=32, d=16, l_sel=64)
    assert s.shape == (1, T, 1, 3)
    assert (s[0, :, 0] == torch.tensor([1.0, 12221.0, 122210000.0])).all()
    s2 = R.block_importance(p, l=32, d=16, l_sel=64, variant="overlap")
    assert (s2[0, :, 0] == torch.tensor([1222.0, 12221000.0, 210000000.0])).all()


@pytest.mark.parametrize("l,d,l_sel", [(32, 16, 64), (16, 16, 64), (64, 16, 32), (8, 2, 4), (6, 3, 9)])
def test_block_importance_matches_formula_and_overlap_count(l, d, l_sel):
    T = 200
    tc, nb = R.num_compressed(T, l, d), R.num_selection_blocks(T, l_sel)
    p = torch.rand(1, T, 1, tc, generator=torch.Generator().manual_seed(7), dtype=F64)
    s = R.block_importance(p, l=l, d=d, l_sel=l_sel)
    s2 = R.block_importance(p, l=l, d=d, l_sel=l_sel, variant="overlap")
    for t in range(0, T, 17):
        for j in range(nb):
            want = 0.0
            for m in range(l_sel // d):
                for n in range(l // d):
                    i = (l_sel // d) * j - m - n
                    if 0 <= i < tc:
                        want += float(p[0, t, 0, i])
            want2 = 0.0
            for i in range(tc):
                lo, hi = max(i * d, j * l_sel), min(i * d + l, (j + 1) * l_sel)
                if hi > lo:
                    want2 += float(p[0, t, 0, i]) * ((hi - lo) // d)
            assert abs(float(s[0, t, 0, j]) - want) < 1e-12
            assert abs(float(s2[0, t, 0, j]) - want2) < 1e-12


def test_block_importance_rejects_bad_sizes():
    p = torch.zeros(1, 64, 1, R.num_compressed(64, 32, 16))
    with pytest.raises(ValueError):
        R.block_importance(p, l=32, d=16, l_sel=40)
    with pytest.raises(ValueError):
        R.block_importance(p, l=24, d=16, l_sel=64)


def test_shared_block_scores_sum_over_group():
    p = rand(2, 5, 6, 4, seed=16)
    s = R.shared_block_scores(p, 2)
    assert_close(s, torch.stack([p[:, :, 0:3].sum(2), p[:, :, 3:6].sum(2)], dim=2))


# ---------------------------------------------------------------- top-n


def row(idx, t, h=0, b=0):
    return idx[b, t, h].tolist()


def test_topn_forced_blocks_win_over_higher_scores():
    T, H, l_sel, n = 200, 2, 16, 5
    nb = R.num_selection_blocks(T, l_sel)  # 13
    sc = (100.0 - torch.arange(nb, dtype=F64)).expand(1, T, H, nb).clone()
    sc[0, 199, :, 11] = -5
    sc[0, 199, :, 12] = -5
    idx = R.select_topn(sc, l_sel=l_sel, n=n)
    assert idx.dtype == torch.int32 and idx.shape == (1, T, H, n)
    assert row(idx, 199, 1) == [0, 1, 2, 11, 12]
    assert row(idx, 100) == [0, 1, 2, 5, 6]  # t in block 6
    assert row(idx, 47) == [0, 1, 2, -1, -1]
    assert row(idx, 48) == [0, 1, 2, 3, -1]
    assert row(idx, 0) == [0, -1, -1, -1, -1]
    idx = R.select_topn(sc, l_sel=l_sel, n=n, num_initial=2, num_local=3)
    assert row(idx, 199) == [0, 1, 10, 11, 12]
    idx = R.select_topn(sc, l_sel=l_sel, n=n, num_initial=0, num_local=0)
    assert row(idx, 199) == [0, 1, 2, 3, 4]


def test_topn_ties_go_to_lower_index():
    T, l_sel, n, nb = 160, 16, 4, 10
    sc = torch.full((1, T, 1, nb), 0.5)
    assert row(R.select_topn(sc, l_sel=l_sel, n=n), 159) == [0, 1, 8, 9]
    assert row(R.select_topn(sc, l_sel=l_sel, n=n, num_initial=0, num_local=0), 159) == [0, 1, 2, 3]
    sc[0, 159, 0] = 0.1
    sc[0, 159, 0, 5] = 0.9
    sc[0, 159, 0, 3] = 0.7
    sc[0, 159, 0, 6] = 0.7
    assert row(R.select_topn(sc, l_sel=l_sel, n=n), 159) == [0, 5, 8, 9]
    assert row(R.select_topn(sc, l_sel=l_sel, n=5), 159) == [0, 3, 5, 8, 9]


def test_topn_random_scores_satisfy_rules():
    B, T, H, l_sel, n = 2, 300, 3, 16, 6
    nb = R.num_selection_blocks(T, l_sel)
    sc = torch.randint(0, 4, (B, T, H, nb), generator=torch.Generator().manual_seed(5)).to(F64)  # many ties
    idx = R.select_topn(sc, l_sel=l_sel, n=n)
    for b in range(B):
        for t in range(0, T, 7):
            for h in range(H):
                r = row(idx, t, h, b)
                s = sc[b, t, h].tolist()
                current = t // l_sel
                count = sum(x >= 0 for x in r)
                assert count == min(n, current + 1)
                assert r[:count] == sorted(r[:count]) and len(set(r[:count])) == count
                assert all(0 <= x <= current for x in r[:count]) and all(x == -1 for x in r[count:])
                sel = set(r[:count])

                def forced(j):
                    return j == 0 or j == current or j == current - 1

                assert all(j in sel for j in range(current + 1) if forced(j))
                for u in range(current + 1):
                    if u in sel:
                        continue
                    for s2 in sel:
                        if not forced(s2):
                            assert s[u] < s[s2] or (s[u] == s[s2] and u > s2)


def test_topn_sequence_shorter_than_one_block():
    q = rand(1, 10, 4, 4, seed=17)
    kc = torch.zeros(1, 0, 2, 4, dtype=F64)
    idx = R.select_blocks(q, kc, l=32, d=16, l_sel=64, n=4)
    assert idx.shape == (1, 10, 2, 4)
    assert (idx == torch.tensor([0, -1, -1, -1], dtype=torch.int32)).all()


def test_topn_rejects_too_many_forced_blocks():
    sc = torch.zeros(1, 64, 1, 4)
    with pytest.raises(ValueError, match="num_initial"):
        R.select_topn(sc, l_sel=16, n=2)
    R.select_topn(sc, l_sel=16, n=3)


def test_select_blocks_pipeline_and_chunking():
    T, l, d, l_sel, n = 150, 32, 16, 64, 3
    q, kc, _ = qkv(B=2, T=T, H=2, G=3, Tkv=R.num_compressed(T, l, d), seed=18)
    p = R.compressed_probabilities(q, kc, l=l, d=d)
    sh = R.shared_block_scores(R.block_importance(p, l=l, d=d, l_sel=l_sel), 2)
    want = R.select_topn(sh, l_sel=l_sel, n=n, num_initial=0, num_local=0)
    for chunk in (7, 64, 1000):
        got = R.select_blocks(q, kc, l=l, d=d, l_sel=l_sel, n=n, num_initial=0, num_local=0, chunk=chunk)
        assert torch.equal(got, want)
    # n = 2 without forced blocks, t >= 128 (3 visible blocks): the lowest score is dropped
    got = R.select_blocks(q, kc, l=l, d=d, l_sel=l_sel, n=2, num_initial=0, num_local=0)
    for b in range(2):
        for t in range(128, T, 5):
            for h in range(2):
                r = sh[b, t, h].tolist()
                worst = max(range(3), key=lambda j: (-r[j], j))  # ties: the higher index is dropped
                assert row(got, t, h, b) == [j for j in range(3) if j != worst]


def test_full_selection_feeds_selected_attention():
    # n >= NB selects every visible block: the selected branch is causal attention.
    T, l, d, l_sel = 70, 8, 4, 8
    q, k, v = qkv(T=T, seed=19)
    kc = R.compress(k, l=l, d=d)
    idx = R.select_blocks(q, kc, l=l, d=d, l_sel=l_sel, n=R.num_selection_blocks(T, l_sel))
    o, _ = R.selected_attention(q, k, v, idx, l_sel=l_sel)
    assert_close(o, R.causal_attention(q, k, v)[0])


# ---------------------------------------------------------------- gating / nsa_attention


def test_gated_combine_hand_values():
    oc = torch.tensor([1.0, 2, 3, 4]).reshape(1, 1, 2, 2)
    os_ = oc * 10
    ow = oc * 100
    g = lambda a, b: torch.tensor([a, b]).reshape(1, 1, 2)  # noqa: E731
    out = R.gated_combine(oc, os_, ow, g(1.0, 0.5), g(0.0, 1.0), g(0.25, 0.0))
    assert out.flatten().tolist() == [1 + 25, 2 + 50, 1.5 + 30, 2 + 40]


def test_nsa_attention_is_the_gated_sum_of_its_branches():
    B, T, H, G, Dk, Dv = 2, 50, 2, 2, 8, 4
    l, d, l_sel, n, w = 8, 4, 8, 4, 10
    q, k, v = qkv(B, T, H, G, Dk, Dv, seed=20)
    gs = [torch.rand(B, T, H * G, generator=torch.Generator().manual_seed(i), dtype=F64) for i in range(3)]
    o, idx, (lc, ls, lw) = R.nsa_attention(q, k, v, *gs, l=l, d=d, l_sel=l_sel, n=n, w=w,
                                           return_indices=True, return_lse=True)
    kc, vc = R.compress(k, l=l, d=d), R.compress(v, l=l, d=d)
    assert torch.equal(idx, R.select_blocks(q, kc, l=l, d=d, l_sel=l_sel, n=n))
    oc, lc2 = R.compressed_attention(q, kc, vc, l=l, d=d)
    os_, ls2 = R.selected_attention(q, k, v, idx, l_sel=l_sel)
    ow, lw2 = R.window_attention(q, k, v, w=w)
    assert_close(o, R.gated_combine(oc, os_, ow, *gs))
    assert_close(lc, lc2)
    assert_close(ls, ls2)
    assert_close(lw, lw2)
    # given indices / precompressed kv / separate branch kv give the same
    o2 = R.nsa_attention(q, None, None, *gs, l=l, d=d, l_sel=l_sel, n=n, w=w, kc=kc, vc=vc, indices=idx,
                         k_slc=k, v_slc=v, k_swa=k, v_swa=v)
    assert_close(o2, o)
    o3, idx3 = R.nsa_attention(q, k, v, *gs, l=l, d=d, l_sel=l_sel, n=n, w=w, return_indices=True)
    assert_close(o3, o) and torch.equal(idx3, idx)
    with pytest.raises(ValueError, match="is not given"):
        R.nsa_attention(q, None, None, *gs, l=l, d=d, l_sel=l_sel, n=n, w=w)


def test_nsa_attention_weighted_pool():
    B, T, H, G = 1, 40, 1, 2
    q, k, v = qkv(B, T, H, G, 4, 4, seed=21)
    gs = [torch.full((B, T, H * G), 0.5) for _ in range(3)]
    wgt = torch.linspace(0.1, 1.0, 8)
    o = R.nsa_attention(q, k, v, *gs, l=8, d=4, l_sel=8, n=3, w=5, pool="weighted", pool_weight=wgt)
    kc = R.compress(k, l=8, d=4, pool="weighted", weight=wgt)
    vc = R.compress(v, l=8, d=4, pool="weighted", weight=wgt)
    o2 = R.nsa_attention(q, k, v, *gs, l=8, d=4, l_sel=8, n=3, w=5, kc=kc, vc=vc)
    assert_close(o, o2)


# ---------------------------------------------------------------- gradients (float64 gradcheck)


def finite(out):
    """(o, lse) with lse = -inf (rows that see no key) replaced by 0 for gradcheck's finite differences."""
    o, lse = out
    return o, torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))


def small(requires_grad=True, B=1, T=11, H=1, G=2, Dk=3, Dv=2, Tkv=None, seed=30):
    ts = qkv(B, T, H, G, Dk, Dv, Tkv=Tkv, seed=seed)
    return [t.requires_grad_(requires_grad) for t in ts]


def test_gradcheck_window():
    q, k, v = small()
    assert torch.autograd.gradcheck(lambda q, k, v: finite(R.window_attention(q, k, v, w=4, chunk=4)), (q, k, v))


def test_gradcheck_selected():
    q, k, v = small(T=12)
    idx = torch.tensor([[0, 2, -1], [1, 1, 0]], dtype=torch.int32).repeat(6, 1).reshape(1, 12, 1, 3)
    assert torch.autograd.gradcheck(lambda q, k, v: finite(R.selected_attention(q, k, v, idx, l_sel=4, chunk=5)),
                                    (q, k, v))


def test_gradcheck_compressed_and_compression():
    T, l, d = 13, 4, 2
    q, k, v = small(T=T)
    wgt = torch.rand(l, dtype=F64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)

    def f(q, k, v, wgt):
        kc = R.compress(k, l=l, d=d, pool="weighted", weight=wgt)
        vc = R.compress(v, l=l, d=d)
        return finite(R.compressed_attention(q, kc, vc, l=l, d=d, chunk=6))

    assert torch.autograd.gradcheck(f, (q, k, v, wgt))


def test_gradcheck_block_importance_and_probabilities():
    T, l, d, l_sel = 20, 4, 2, 8
    q, k, _ = small(T=T, Tkv=R.num_compressed(T, l, d))

    def f(q, k):
        return R.block_importance(R.compressed_probabilities(q, k, l=l, d=d), l=l, d=d, l_sel=l_sel)

    assert torch.autograd.gradcheck(f, (q, k))


def test_gradcheck_nsa_attention_with_gates():
    B, T, H, G = 1, 12, 1, 2
    q, k, v = small(B=B, T=T, H=H, G=G, seed=31)
    gs = [torch.rand(B, T, H * G, dtype=F64, generator=torch.Generator().manual_seed(i)).requires_grad_(True)
          for i in range(3)]
    idx = R.select_blocks(q.detach(), R.compress(k.detach(), l=4, d=2), l=4, d=2, l_sel=4, n=3)

    def f(q, k, v, a, b, c):
        return R.nsa_attention(q, k, v, a, b, c, l=4, d=2, l_sel=4, n=3, w=3, indices=idx, chunk=5)

    assert torch.autograd.gradcheck(f, (q, k, v, *gs))


# ---------------------------------------------------------------- chunk key ranges and checkpointing


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunking_and_checkpoint_do_not_change_results_or_gradients(chunk):
    """Each query chunk only reads the keys it can see (window: chunk + w - 1, causal
    branches: up to the chunk's end); checkpoint=True recomputes chunks in backward. Both
    must leave outputs and gradients unchanged."""
    B, T, H, G, D = 2, 45, 2, 2, 8
    l, d, l_sel, n, w = 8, 4, 8, 3, 6
    q, k, v = (rand(B, T, H * G, D, seed=40), rand(B, T, H, D, seed=41), rand(B, T, H, D, seed=42))
    gates = [torch.rand(B, T, H * G, generator=torch.Generator().manual_seed(43 + i), dtype=F64) for i in range(3)]
    kw = dict(l=l, d=d, l_sel=l_sel, n=n, w=w)

    def run(chunk, checkpoint):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v, *gates)]
        o, idx, lse = R.nsa_attention(*leaves, return_indices=True, return_lse=True, chunk=chunk,
                                      checkpoint=checkpoint, **kw)
        (o * torch.linspace(-1, 1, o.numel(), dtype=F64).reshape(o.shape)).sum().backward()
        return o.detach(), idx, [x.detach() for x in lse], [t.grad for t in leaves]

    o0, idx0, lse0, g0 = run(T, False)  # one chunk: every key
    for checkpoint in (False, True):
        o1, idx1, lse1, g1 = run(chunk, checkpoint)
        assert torch.equal(idx0, idx1)
        assert_close(o1, o0)
        for a, b in zip(lse1, lse0):
            assert_close(a, b)
        for a, b in zip(g1, g0):
            assert_close(a, b)
