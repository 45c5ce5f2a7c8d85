"""Times the fused scoring + top-n (paper: Dk 192, l 32, d 16; main: Dk 128, l = d = 64; and
Dk 128 with l 32, d 16) under one set of experiment knobs (environment) and compares its indices
with a reference variant's."""
import json, os, sys, time
import torch
import nsajit.torch as nt

name, refdir = sys.argv[1], sys.argv[2]
T, H, G = 65536, 4, 16
res = {}
gen = torch.Generator(device="cuda"); gen.manual_seed(0)
for shape, dk, (l, d) in (("paper", 192, (32, 16)), ("main", 128, (64, 64)), ("main-l32", 128, (32, 16))):
    q = torch.randn(1, T, H * G, dk, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, T, H, dk, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(1, T, H, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    kc, vc = nt.compress(k, l=l, d=d), nt.compress(v, l=l, d=d)
    _, lse = nt.compressed_attention(q, kc, vc, l=l, d=d, return_lse=True)
    fn = lambda: nt.select_topn(q, kc, lse, l=l, d=d, l_sel=64, n=16)
    t0 = time.time(); idx = fn(); torch.cuda.synchronize(); first = time.time() - t0
    path = os.path.join(refdir, f"topn-{shape}.pt")
    cpu = idx.cpu()
    if name == "ref":
        torch.save(cpu, path); diff = 0
    else:
        diff = int((cpu != torch.load(path)).any(dim=-1).sum())
    ev = []
    for _ in range(12):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); ev.append((s, e))
    torch.cuda.synchronize()
    ts = sorted(s.elapsed_time(e) for s, e in ev)
    res[f"topn[{shape}]"] = {"ms": ts[len(ts) // 2], "min": ts[0], "rows_differing": diff}
    print(f"{name:10s} topn[{shape:8s}] {ts[len(ts)//2]:7.3f} ms (min {ts[0]:.3f})  rows differing from ref {diff} first {first:.2f}s", flush=True)
    del q, k, v, kc, vc, lse, idx
print("JSON", json.dumps({name: res}))
