"""Times the forward kernel of one branch over explicit tiles (warps, tokens, kv chunk) at one
configuration, with CUDA events: a quick look at the tile space beside the autotuner (which
times random inputs only). Selected: random and local block indices (bench_nsa's generators).

    python3 bench/sweep_tiles.py --branch selected --T 65536 --tiles 1x1x32,8x8x64 --out sweep.json

--arch 80,90 times each tile with the sm_80 kernels (mma.sync) and the sm_90a ones (wgmma where
the tile is whole warpgroups) on the same GPU (90 needs compute capability 9.0).

Every tile's output is compared with the first tile's on the same inputs (max_abs_diff: another
tile sums the same terms in another order, so a few bf16 ulps; a wrong kernel shows as O(1)).

--backward also times the branch's three backward kernels (bwd_ms) after each forward: the tile's
tokens also pick the selected dQ kernel's schedule (1: per token, more: the union of their blocks,
with the tile's chunk). bwd_max_abs_diff compares dq, dk and dv with the first tile's.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_nsa as bn  # noqa: E402  (index generators and shapes)
import nsajit.torch as nt  # noqa: E402
from nsajit import _capi  # noqa: E402


def parse_tiles(text):
    tiles = []
    for part in text.split(","):
        w, t, c = (int(x) for x in part.split("x"))
        tiles.append((w, t, c))
    return tiles


def time_ms(fn, reps=10):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def kernel_launches(fn):
    """GPU ms of each kernel launch of one call of fn, in launch order (torch.profiler): two
    kernels of one name (a two-kernel schedule's) show apart."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out = []
    for e in prof.events():
        us = getattr(e, "device_time", None)
        if us is None:  # older torch
            us = getattr(e, "cuda_time", 0.0)
        if us and us > 0 and e.name.startswith("nsa_"):
            out.append([e.name, round(us / 1000.0, 3)])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--branch", choices=["selected", "window", "compressed"], default="selected")
    p.add_argument("--T", type=int, default=65536)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--G", type=int, default=16)
    p.add_argument("--dk", type=int, default=128)
    p.add_argument("--dv", type=int, default=128)
    p.add_argument("--l", type=int, default=64, help="compressed block l (compressed branch)")
    p.add_argument("--d", type=int, default=64, help="compressed stride d (compressed branch)")
    p.add_argument("--tiles", required=True, help="warps x tokens x kv_chunk, comma-separated (0 = default)")
    p.add_argument("--arch", default="0", help="comma-separated: 0 (the GPU's), 80, 90")
    p.add_argument("--backward", action="store_true", help="also time the backward kernels (bwd_ms)")
    p.add_argument("--kernels", action="store_true",
                   help="also list each kernel launch of one forward (and backward) call with its GPU ms")
    p.add_argument("--backward-split", type=int, default=0,
                   help="the most query tokens one dK/dV CTA walks (0: the runtime's choice)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    dev = "cuda"
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    q = torch.randn(1, a.T, a.H * a.G, a.dk, device=dev, dtype=torch.bfloat16)
    k = torch.randn(1, a.T, a.H, a.dk, device=dev, dtype=torch.bfloat16)
    v = torch.randn(1, a.T, a.H, a.dv, device=dev, dtype=torch.bfloat16)
    branch = {"selected": _capi.Branch.SELECTED, "window": _capi.Branch.WINDOW,
              "compressed": _capi.Branch.COMPRESSED}[a.branch]
    index_sets = {"none": None}
    if a.branch == "selected":
        index_sets = {kind: fn(torch, a.T, a.H, bn.L_SEL, bn.N_SEL, gen, device=dev)
                      for kind, fn in (("random", bn.random_indices), ("local", bn.local_indices))}
    kk, vv = k, v
    if a.branch == "compressed":
        tc = (a.T - a.l) // a.d + 1
        kk, vv = k[:, :tc].contiguous(), v[:, :tc].contiguous()
    results = []
    first_out = {}  # index kind -> the first tile's output
    first_bwd = {}  # index kind -> the first tile's dq, dk, dv
    ctx = nt.context()
    ctx.set_backward_split(a.backward_split)
    for arch, (w, t, c) in ((int(x), tile) for x in a.arch.split(",") for tile in parse_tiles(a.tiles)):
        ctx.set_arch(arch)
        cfg = _capi.make_config(dtype=int(_capi.DType.BF16), head_dim_qk=a.dk, head_dim_v=a.dv, num_kv_heads=a.H,
                                group=a.G, slc_block=bn.L_SEL, slc_count=bn.N_SEL, window=bn.WINDOW, cmp_block=a.l,
                                cmp_stride=a.d, tile_warps=w, tile_tokens=t, tile_kv_chunk=c)
        for kind, idx in index_sets.items():
            t0 = time.time()
            bwd_ms = bwd_diff = None
            launches = None
            gen_dout = torch.Generator(device=dev)
            gen_dout.manual_seed(1)
            try:
                ms = time_ms(lambda: nt._forward(branch, cfg, q, kk, vv, idx))
                if a.kernels:
                    launches = kernel_launches(lambda: nt._forward(branch, cfg, q, kk, vv, idx))
                o = nt._forward(branch, cfg, q, kk, vv, idx)[0].float()
                first = first_out.setdefault(kind, o)
                diff = (o - first).abs().max().item()
                if a.backward:
                    o, lse = nt._forward(branch, cfg, q, kk, vv, idx)
                    dout = torch.randn(o.shape, device=dev, dtype=o.dtype, generator=gen_dout)
                    bwd_ms = time_ms(lambda: nt._backward(branch, cfg, q, kk, vv, idx, o, lse, dout, None))
                    # The same dout for every tile: the gradients compare like the outputs.
                    grads = nt._backward(branch, cfg, q, kk, vv, idx, o, lse, dout, None)[:3]
                    first_grads = first_bwd.setdefault(kind, [g.float() for g in grads])
                    bwd_diff = max((g.float() - f).abs().max().item() for g, f in zip(grads, first_grads))
                    if a.kernels:
                        launches += kernel_launches(
                            lambda: nt._backward(branch, cfg, q, kk, vv, idx, o, lse, dout, None))
                err = None
            except Exception as e:  # an illegal tile: report and go on
                ms, err, diff = None, str(e), None
            line = {"branch": a.branch, "arch": arch, "indices": kind, "tile": [w, t, c], "fwd_ms": ms,
                    "max_abs_diff": diff, "bwd_ms": bwd_ms, "bwd_max_abs_diff": bwd_diff, "error": err}
            if launches is not None:
                line["kernels"] = launches
            results.append(line)
            print(json.dumps(line), f"({time.time() - t0:.1f} s)", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "T": a.T, "H": a.H, "G": a.G,
                                           "dk": a.dk, "dv": a.dv, "results": results}, indent=1))


if __name__ == "__main__":
    main()
