"""The trainable-NSA matrix on a GPU: nsajit.torch against nsajit.reference (float32, on the
GPU), bf16 inputs, relative error < 2e-2 for every output and every gradient.

Axes: G in {1, 4, 16, 32} (H = 2 KV heads for G <= 4, else 1; B = 1), (Dk, Dv) in
{(64, 64), (128, 128), (192, 128)}, (l, d, l') in {(64, 64, 64), (32, 16, 64)}, T in
{100, 4096, 16384}; n = 16 (1 initial + 2 local forced blocks), w = 512.

Coverage: the full cartesian product G x (Dk, Dv) x (l, d, l') (24 cases) at every T
(72 cases). ``NSAJIT_PY_GPU_LONG=axes`` cuts T = 4096 and T = 16384 to 4 cases each that
together cover every value of every axis (the 16384 ones include the paper's G = 16,
Dk = 192, Dv = 128, l = 32, d = 16, l' = 64); see the comment at T4096_CASES for the time
and memory this costs. For each case:

- ``test_branch``: each branch alone, gated (out = gate * branch), forward (out, lse) and
  backward (dq, dk, dv, dgate); the compressed branch through the PyTorch compression of
  k and v, the selected branch on the reference's (float32) indices;
- ``test_nsa_attention``: the whole ``nsa_attention`` (compression of k and v on the
  pooling kernels, fused top-n selection, the three branches, the gates): forward (o and
  the three lse) and backward with respect to q, k, v and the three gates; the reference
  runs on nsajit's indices;
- ``test_topn``: ``select_topn`` (the fused scoring + top-n kernel) against the float64
  reference selection (``nsajit.reference``: eq. 9, GQA sum, top-n). Rows may differ only
  where every block in which they differ scores within 1e-5 (relative) of the weakest
  non-forced block the reference picked (a float near tie); such rows are counted and
  reported (``near_ties`` in the JSON summary).

Plus ``test_topn_forced_blocks`` (forced blocks (0, 0) and (2, 3)) and
``test_reference_selection_path`` (``nsa_attention(selection='reference')`` gives the
fused kernel's indices up to near ties).

Relative errors are ||nsajit - reference|| / ||reference|| over the reference's finite
entries, with an RMS floor of 1e-3 in the denominator for (nearly) zero references (see
:func:`rel_err`).

Set ``NSAJIT_PY_GPU_JSON=/path/summary.json`` to get every case's errors (and the run's
device, library and timings) as JSON. Before the first test, all kernels the matrix needs
are compiled on a thread pool (the PTX generation is serialised inside libnsajit, the
driver's JIT runs in parallel); ``NSAJIT_PY_GPU_PREWARM=0`` turns that off.

Skipped with a visible reason without a CUDA device.
"""

import json
import math
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import nsajit
from nsajit import reference as R

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU tests skipped")

if torch.cuda.is_available():  # nsajit.torch imports fine anywhere; keep CPU collection cheap
    import nsajit.torch as nt

TOL = 2e-2
TIE_RTOL = 1e-5
N, W = 16, 512
BF16 = torch.bfloat16

G_VALUES = (1, 4, 16, 32)
DIMS = ((64, 64), (128, 128), (192, 128))
BLOCKS = ((64, 64, 64), (32, 16, 64))
T_VALUES = (100, 4096, 16384)


def make_case(T, G, dims, blocks):
    (Dk, Dv), (l, d, l_sel) = dims, blocks
    return dict(B=1, T=T, H=2 if G <= 4 else 1, G=G, Dk=Dk, Dv=Dv, l=l, d=d, l_sel=l_sel, n=N, w=W)


def full_product(T):
    return [make_case(T, G, dims, blocks) for G in G_VALUES for dims in DIMS for blocks in BLOCKS]


# 4 cases per long T that cover every value of every axis (NSAJIT_PY_GPU_LONG=axes), also used
# by the single-case tests below.
AXES_T4096 = [make_case(4096, 1, (192, 128), BLOCKS[1]), make_case(4096, 4, (64, 64), BLOCKS[0]),
              make_case(4096, 16, (128, 128), BLOCKS[1]), make_case(4096, 32, (192, 128), BLOCKS[0])]
AXES_T16384 = [make_case(16384, 16, (192, 128), BLOCKS[1]), make_case(16384, 32, (128, 128), BLOCKS[0]),
               make_case(16384, 4, (64, 64), BLOCKS[1]), make_case(16384, 1, (128, 128), BLOCKS[0])]

# The full product at T = 4096 and T = 16384 (issue item 6: every output and gradient, and the
# top-n indices, for every G x (Dk, Dv) x (l, d, l') at every T).
#
# Time, from the 4-case run on an H100 (bench/train/results/2026-11-25-h100/gpu_matrix.json;
# seconds per case for nsajit + the float32 reference + the comparison): T = 4096: each branch
# 0.06-0.13 s, nsa_attention 0.18-0.36 s, topn 0.01 s, about 0.6 s a case for the five tests;
# T = 16384: each branch 0.22-0.81 s, nsa_attention 0.85-1.27 s, topn 0.05-0.08 s, 1.8-2.8 s a
# case. The 20 more cases at each T therefore add about 12 s (T = 4096) and 45-55 s
# (T = 16384): about a minute, with no new kernels to compile (the T = 100 product already has
# every config; the kernels do not depend on T).
#
# Memory: the reference never builds a T x T tensor. nsajit.reference walks the queries in
# chunks of 256 and the tests pass checkpoint=True, so autograd keeps O(T) per branch and
# recomputes one chunk at a time; the largest tensors are one chunk's selected-branch scores /
# probabilities [B=1, 256, HQ <= 32, keys <= T] float32 = 512 MiB at T = 16384, HQ = 32 (a few
# alive during a chunk's recompute and backward: a few GB). The compressed branch's chunks are
# [1, 256, 32, Tc <= 1023], the window's [1, 256, 32, 256 + w]; the float64 top-n reference
# takes 512 queries at a time ([1, 512, 32, 1023] float64 = 128 MiB); nsajit's tensors are at
# most 192 MiB each (q at T = 16384, HQ = 32, Dk = 192, bf16). Peak per case: well under 10 GB.
if os.environ.get("NSAJIT_PY_GPU_LONG", "full") == "axes":
    T4096_CASES, T16384_CASES = AXES_T4096, AXES_T16384
else:
    T4096_CASES, T16384_CASES = full_product(4096), full_product(16384)
FULL_T100 = full_product(100)
CASES = FULL_T100 + T4096_CASES + T16384_CASES


def case_id(c):
    return f"T{c['T']}-G{c['G']}-H{c['H']}-d{c['Dk']}x{c['Dv']}-l{c['l']}d{c['d']}s{c['l_sel']}"


IDS = [case_id(c) for c in CASES]

# Every value of every axis at every T (checked here so that edits keep the promise).
for _T in T_VALUES:
    _at = [c for c in CASES if c["T"] == _T]
    assert {c["G"] for c in _at} == set(G_VALUES), _T
    assert {(c["Dk"], c["Dv"]) for c in _at} == set(DIMS), _T
    assert {(c["l"], c["d"], c["l_sel"]) for c in _at} == set(BLOCKS), _T

# ---- the JSON summary ---------------------------------------------------------------------

RESULTS = []


@pytest.fixture(scope="module", autouse=True)
def _summary_and_precision():
    """float32 reference without TF32; writes $NSAJIT_PY_GPU_JSON after the module."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    path = os.environ.get("NSAJIT_PY_GPU_JSON")
    if not path:
        return
    summary = {}
    for r in RESULTS:
        s = summary.setdefault(r["test"], {"cases": 0, "passed": 0, "max_err": {}})
        s["cases"] += 1
        s["passed"] += bool(r["pass"])
        for key, value in r.get("errors", {}).items():
            s["max_err"][key] = max(s["max_err"].get(key, 0.0), value)
        if "near_ties" in r:
            s["near_ties"] = s.get("near_ties", 0) + r["near_ties"]
            s["mismatching_rows"] = s.get("mismatching_rows", 0) + r["mismatching_rows"]
    doc = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "nsajit": nsajit.version(),
        "library": nsajit.library().path,
        "tolerance": TOL,
        "tie_rtol": TIE_RTOL,
        "seconds": time.perf_counter() - start,
        "summary": summary,
        "cases": RESULTS,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=float)


def record(test, c, errors=None, ok=True, **extra):
    r = {"test": test, "case": case_id(c) if c is not None else None, "pass": bool(ok)}
    if c is not None:
        r.update({k: c[k] for k in ("B", "T", "H", "G", "Dk", "Dv", "l", "d", "l_sel", "n", "w")})
    if errors is not None:
        r["errors"] = {k: (float(v) if math.isfinite(v) else 1e30) for k, v in errors.items()}
    r.update(extra)
    RESULTS.append(r)
    return r


# ---- kernel prewarm -----------------------------------------------------------------------


def _kernels(c):
    """(config, branch, pass) of every kernel a case launches (configs as nsajit.torch makes them)."""
    B = nsajit.Branch
    cfg_c = nt._make_config(B.COMPRESSED, BF16, c["Dk"], c["Dv"], c["H"], c["G"], l=c["l"], d=c["d"])
    cfg_s = nt._make_config(B.SELECTED, BF16, c["Dk"], c["Dv"], c["H"], c["G"], l_sel=c["l_sel"], n=c["n"])
    cfg_w = nt._make_config(B.WINDOW, BF16, c["Dk"], c["Dv"], c["H"], c["G"], w=c["w"])
    for cfg, branch in ((cfg_c, "compressed"), (cfg_s, "selected"), (cfg_w, "window")):
        for kernel_pass in ("forward", "backward_pre", "backward_dq", "backward_dkdv"):
            yield cfg, branch, kernel_pass
    if nsajit.has_select_topn():
        yield (nt._make_topn_config(BF16, c["Dk"], c["H"], c["G"], l=c["l"], d=c["d"], l_sel=c["l_sel"],
                                    n=c["n"], initial=1, local=2, scale=None), "compressed", "topn")
    if nsajit.has_compress():  # nsa_attention's compression of k and v (mean pooling)
        for dim in sorted({c["Dk"], c["Dv"]}):
            cfg_p = nt._make_compress_config(BF16, dim, c["H"], c["l"], c["d"])
            for kernel_pass in ("pool", "pool_bwd"):
                yield cfg_p, "compressed", kernel_pass


@pytest.fixture(scope="module", autouse=True)
def _prewarm(_summary_and_precision):
    if os.environ.get("NSAJIT_PY_GPU_PREWARM", "1") == "0" or not nsajit.has_backward():
        yield
        return
    start = time.perf_counter()
    ctx = nt.context()
    seen, jobs = set(), []
    for c in CASES:
        for cfg, branch, kernel_pass in _kernels(c):
            key = (repr(cfg), branch, kernel_pass)
            if key not in seen:
                seen.add(key)
                jobs.append((cfg, branch, kernel_pass))
    errors = []

    def build(job):
        try:
            ctx.compile(*job)
        except nsajit.NsajitError as e:  # the test that launches it reports it
            errors.append(str(e))

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 4)) as pool:
        list(pool.map(build, jobs))
    record("prewarm", None, ok=not errors, kernels=len(jobs), seconds=time.perf_counter() - start,
           compile_errors=errors[:10])
    yield


# ---- helpers ------------------------------------------------------------------------------


def rel_err(a, b):
    """||a - b|| / max(||b||, 1e-3 * sqrt(numel)) over b's finite entries (a reference that is
    zero, or nearly, is compared with an absolute RMS floor of 1e-3: e.g. dq and dk of the
    compressed branch when every row sees at most one compressed token, where the softmax has
    no gradient); inf when a has NaN or infinities where b has none."""
    a, b = a.detach().double(), b.detach().double()
    if torch.isnan(a).any() or not torch.equal(torch.isinf(a), torch.isinf(b)):
        return math.inf
    fin = torch.isfinite(b)
    num = (a[fin] - b[fin]).norm()
    den = max(float(b[fin].norm()), 1e-3 * math.sqrt(max(1, int(fin.sum()))))
    return float(num / den)


def seed_of(c, salt):
    return zlib.crc32(f"{case_id(c)}/{salt}".encode())


def inputs(c, salt):
    g = torch.Generator(device="cuda").manual_seed(seed_of(c, salt))
    B, T, H, G, Dk, Dv = c["B"], c["T"], c["H"], c["G"], c["Dk"], c["Dv"]
    q = torch.randn(B, T, H * G, Dk, device="cuda", generator=g).to(BF16)
    k = torch.randn(B, T, H, Dk, device="cuda", generator=g).to(BF16)
    v = torch.randn(B, T, H, Dv, device="cuda", generator=g).to(BF16)
    gates = [torch.rand(B, T, H * G, device="cuda", generator=g) for _ in range(3)]
    dout = torch.randn(B, T, H * G, Dv, device="cuda", generator=g).to(BF16)
    return q, k, v, gates, dout


def leaf(t, dtype=None):
    t = t.detach()
    return (t.to(dtype) if dtype is not None else t.clone()).requires_grad_(True)


def need_backward():
    for branch in ("compressed", "selected", "window"):
        if not nsajit.has_backward(branch):
            pytest.skip(f"{nsajit.library().path} has no nsajit_{branch}_backward")


def need_topn():
    if not nsajit.has_select_topn():
        pytest.skip(f"{nsajit.library().path} has no nsajit_select_topn")


def need_compress():
    if not nsajit.has_compress():
        pytest.skip(f"{nsajit.library().path} has no nsajit_compress_forward/backward (nsa_attention's "
                    f"default compression='kernel')")


def compressed_kv(c, k, v):
    """k_cmp, v_cmp as nsa_attention feeds the kernels: the pooling kernels (compression='kernel')
    where the library has them, else the PyTorch float32 compression rounded to bf16."""
    if nsajit.has_compress():
        return nt.compress(k, l=c["l"], d=c["d"]), nt.compress(v, l=c["l"], d=c["d"])
    return (R.compress(k.float(), l=c["l"], d=c["d"]).to(BF16), R.compress(v.float(), l=c["l"], d=c["d"]).to(BF16))


def check(test, c, errors, **extra):
    r = record(test, c, errors, ok=all(e < TOL for e in errors.values()), **extra)
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, f"{case_id(c)}: relative errors over {TOL}: {bad} (all: {r['errors']})"


def reference_topn(q, kc, *, l, d, l_sel, n, initial=1, local=2, chunk=512):
    """float64 reference selection: indices [B, T, H, n] and the shared block scores [B, T, H, NB]."""
    H, T = kc.shape[2], q.shape[1]
    idx, scores = [], []
    q, kc = q.double(), kc.double()
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        p = R.compressed_probabilities(q[:, t0:t1], kc, l=l, d=d, t_offset=t0)
        shared = R.shared_block_scores(R.block_importance(p, l=l, d=d, l_sel=l_sel, T=T), H)
        idx.append(R.select_topn(shared, l_sel=l_sel, n=n, num_initial=initial, num_local=local, t_offset=t0))
        scores.append(shared)
    return torch.cat(idx, dim=1), torch.cat(scores, dim=1)


def compare_topn(got, ref, scores, *, l_sel, initial, local, max_rows=2000):
    """(mismatching rows, of which near ties): a row is a near tie when every block in which
    the two selections differ is visible and scores within TIE_RTOL of the weakest
    non-forced block of the reference's selection."""
    rows = (got != ref).any(dim=-1).nonzero().tolist()
    got_c, ref_c, sc_c = got.cpu(), ref.cpu(), scores.cpu()
    ties = 0
    for b, t, h in rows[:max_rows]:
        grow, rrow = got_c[b, t, h].tolist(), ref_c[b, t, h].tolist()
        g = {j for j in grow if j != -1}
        r = {j for j in rrow if j != -1}
        if grow != sorted(g) + [-1] * (len(grow) - len(g)):
            continue  # repeated, unsorted or misplaced -1: never a tie
        jt = t // l_sel
        free = [j for j in r if not (j < initial or j > jt - local)]
        if len(g) != len(r) or not free:
            continue
        row = sc_c[b, t, h]
        weakest = min(row[j].item() for j in free)
        tol = TIE_RTOL * max(abs(weakest), 1e-30)
        if all(0 <= j <= jt and abs(row[j].item() - weakest) <= tol for j in g ^ r):
            ties += 1
    return len(rows), ties


def ref_indices(c, q, k):
    kc = R.compress(k.float(), l=c["l"], d=c["d"])
    return R.select_blocks(q.float(), kc, l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"])


# ---- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("c", CASES, ids=IDS)
@pytest.mark.parametrize("branch", ["compressed", "selected", "window"])
def test_branch(branch, c):
    """One branch, gated: out and lse, then dq, dk, dv, dgate."""
    need_backward()
    start = time.perf_counter()
    q, k, v, gates, dout = inputs(c, branch)
    idx = ref_indices(c, q, k) if branch == "selected" else None
    q_, k_, v_, g_ = leaf(q), leaf(k), leaf(v), leaf(gates[0])
    if branch == "compressed":
        kc = R.compress(k_.float(), l=c["l"], d=c["d"]).to(BF16)
        vc = R.compress(v_.float(), l=c["l"], d=c["d"]).to(BF16)
        out, lse = nt.compressed_attention(q_, kc, vc, g_, l=c["l"], d=c["d"], return_lse=True)
    elif branch == "selected":
        out, lse = nt.selected_attention(q_, k_, v_, idx, g_, l_sel=c["l_sel"], return_lse=True)
    else:
        out, lse = nt.window_attention(q_, k_, v_, g_, w=c["w"], return_lse=True)
    out.backward(dout)
    torch.cuda.synchronize()
    t_nsajit = time.perf_counter() - start

    qr, kr, vr, gr = leaf(q, torch.float32), leaf(k, torch.float32), leaf(v, torch.float32), leaf(gates[0])
    if branch == "compressed":
        o_ref, lse_ref = R.compressed_attention(qr, R.compress(kr, l=c["l"], d=c["d"]),
                                                R.compress(vr, l=c["l"], d=c["d"]), l=c["l"], d=c["d"],
                                                checkpoint=True)
    elif branch == "selected":
        o_ref, lse_ref = R.selected_attention(qr, kr, vr, idx, l_sel=c["l_sel"], checkpoint=True)
    else:
        o_ref, lse_ref = R.window_attention(qr, kr, vr, w=c["w"], checkpoint=True)
    o_ref = gr.unsqueeze(-1) * o_ref
    o_ref.backward(dout.float())
    errors = {"out": rel_err(out, o_ref), "lse": rel_err(lse, lse_ref), "dq": rel_err(q_.grad, qr.grad),
              "dk": rel_err(k_.grad, kr.grad), "dv": rel_err(v_.grad, vr.grad), "dgate": rel_err(g_.grad, gr.grad)}
    assert q_.grad.dtype == BF16 and g_.grad.dtype == torch.float32
    check(f"branch_{branch}", c, errors, seconds=time.perf_counter() - start, seconds_nsajit=t_nsajit)


@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_nsa_attention(c):
    """The whole layer (compression on the pooling kernels, the fused selection): o, lse and the
    gradients of q, k, v, gates."""
    need_backward()
    need_topn()
    need_compress()
    start = time.perf_counter()
    q, k, v, gates, dout = inputs(c, "nsa")
    kw = dict(l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"])
    q_, k_, v_ = leaf(q), leaf(k), leaf(v)
    g_ = [leaf(g) for g in gates]
    o, idx, lses = nt.nsa_attention(q_, k_, v_, *g_, return_indices=True, return_lse=True, **kw)
    assert o.dtype == BF16 and idx.dtype == torch.int32 and idx.shape == (c["B"], c["T"], c["H"], c["n"])
    o.backward(dout)
    torch.cuda.synchronize()
    t_nsajit = time.perf_counter() - start

    qr, kr, vr = leaf(q, torch.float32), leaf(k, torch.float32), leaf(v, torch.float32)
    gr = [leaf(g) for g in gates]
    o_ref, lses_ref = R.nsa_attention(qr, kr, vr, *gr, indices=idx, return_lse=True, checkpoint=True, **kw)
    o_ref.backward(dout.float())
    errors = {"o": rel_err(o, o_ref)}
    for name, a, b in zip(("lse_cmp", "lse_slc", "lse_swa"), lses, lses_ref):
        errors[name] = rel_err(a, b)
    errors.update({"dq": rel_err(q_.grad, qr.grad), "dk": rel_err(k_.grad, kr.grad), "dv": rel_err(v_.grad, vr.grad)})
    for name, a, b in zip(("dg_cmp", "dg_slc", "dg_swa"), g_, gr):
        errors[name] = rel_err(a.grad, b.grad)
    check("nsa_attention", c, errors, seconds=time.perf_counter() - start, seconds_nsajit=t_nsajit)


def run_topn(c, test, initial=1, local=2):
    start = time.perf_counter()
    q, k, v, _, _ = inputs(c, "topn")
    kc, vc = compressed_kv(c, k, v)  # as nsa_attention feeds the kernels
    _, lse = nt.compressed_attention(q, kc, vc, l=c["l"], d=c["d"], return_lse=True)
    got = nt.select_topn(q, kc, lse, l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], initial=initial,
                         local=local)
    assert got.dtype == torch.int32 and got.shape == (c["B"], c["T"], c["H"], c["n"])
    ref, scores = reference_topn(q, kc, l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], initial=initial,
                                 local=local)
    mismatches, ties = compare_topn(got, ref, scores, l_sel=c["l_sel"], initial=initial, local=local)
    ok = mismatches == ties
    record(test, c, None, ok=ok, rows=got.shape[0] * got.shape[1] * got.shape[2], mismatching_rows=mismatches,
           near_ties=ties, initial=initial, local=local, seconds=time.perf_counter() - start)
    assert ok, (f"{case_id(c)} forced {initial}+{local}: {mismatches - ties} rows select other blocks than the "
                f"float64 reference ({mismatches} differ, {ties} of them near ties)")
    return got


@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_topn(c):
    need_topn()
    run_topn(c, "topn")


@pytest.mark.parametrize("forced", [(0, 0), (2, 3)], ids=["forced0+0", "forced2+3"])
def test_topn_forced_blocks(forced):
    need_topn()
    run_topn(AXES_T4096[2], "topn_forced", *forced)


@pytest.mark.parametrize("c", [AXES_T4096[1], AXES_T16384[0]], ids=[case_id(AXES_T4096[1]),
                                                                      case_id(AXES_T16384[0])])
def test_reference_selection_path(c):
    """nsa_attention(selection='reference') (PyTorch top-n on the GPU) and the default fused
    kernel select the same blocks up to near ties, and then give the same output."""
    need_topn()
    need_compress()
    q, k, v, gates, _ = inputs(c, "selection")
    kw = dict(l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"], w=c["w"])
    o_f, idx_f = nt.nsa_attention(q, k, v, *gates, return_indices=True, **kw)
    o_r, idx_r = nt.nsa_attention(q, k, v, *gates, return_indices=True, selection="reference", **kw)
    kc, _ = compressed_kv(c, k, v)  # the keys both selections scored
    _, scores = reference_topn(q, kc, l=c["l"], d=c["d"], l_sel=c["l_sel"], n=c["n"])
    mismatches, ties = compare_topn(idx_f, idx_r, scores, l_sel=c["l_sel"], initial=1, local=2)
    err = rel_err(o_f, o_r)  # near-tie rows may differ a little; they are few
    ok = mismatches == ties and err < TOL
    record("selection_fused_vs_reference", c, {"o": err}, ok=ok, mismatching_rows=mismatches, near_ties=ties)
    assert ok, f"{case_id(c)}: {mismatches - ties} rows differ beyond near ties; o rel err {err}"
