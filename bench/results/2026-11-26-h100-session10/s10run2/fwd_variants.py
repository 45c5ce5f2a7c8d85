"""Times the dense forward kernels (window, compressed) under one set of experiment knobs
(environment), and checks their outputs against a reference variant's sampled rows."""
import json, os, sys, time
import torch
import nsajit.torch as nt

name, refdir = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "fwd"
T, H, G = 65536, 4, 16
res = {}
gen = torch.Generator(device="cuda"); gen.manual_seed(0)
for shape, dk in (("paper", 192), ("main", 128)):
    q = torch.randn(1, T, H * G, dk, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, T, H, dk, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(1, T, H, 128, device="cuda", dtype=torch.bfloat16, generator=gen)
    l, d = (32, 16) if shape == "paper" else (64, 64)
    kc, vc = nt.compress(k, l=l, d=d), nt.compress(v, l=l, d=d)
    cases = {f"window[{shape}]": lambda: nt.window_attention(q, k, v, w=512, return_lse=True),
             f"cmp[{shape}]": lambda: nt.compressed_attention(q, kc, vc, l=l, d=d, return_lse=True)}
    if mode == "fb":
        for t in (q, k, v, kc, vc):
            t.requires_grad_()
        do = torch.randn(1, T, H * G, 128, device="cuda", dtype=torch.bfloat16, generator=gen)

        def fb(f):
            def run():
                o = f(); o.backward(do)
                return o.detach(), q.grad
            return run
        cases = {f"window[{shape}] f+b": fb(lambda: nt.window_attention(q, k, v, w=512)),
                 f"cmp[{shape}] f+b": fb(lambda: nt.compressed_attention(q, kc, vc, l=l, d=d))}
    for cname, fn in cases.items():
        if mode == "fb":
            q.grad = None
        t0 = time.time(); o, lse = fn(); torch.cuda.synchronize(); first = time.time() - t0
        samp = (o[0, ::61].float().cpu() if mode == "fwd" else lse[0, ::61].float().cpu())
        path = os.path.join(refdir, cname + mode + ".pt")
        if name == "ref":
            torch.save(samp, path); err = 0.0
        else:
            err = (samp - torch.load(path)).abs().max().item()
        ev = []
        for _ in range(12):  # back to back, one synchronize: no launch gaps in the figures
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            if mode == "fb":
                q.grad = None
            s.record(); fn(); e.record(); ev.append((s, e))
        torch.cuda.synchronize()
        ts = sorted(s.elapsed_time(e) for s, e in ev)
        res[cname] = {"ms": ts[len(ts) // 2], "min": ts[0], "maxerr": err, "finite": bool(torch.isfinite(o).all())}
        print(f"{name:10s} {cname:16s} {ts[len(ts)//2]:7.3f} ms (min {ts[0]:.3f})  max|diff| vs ref {err:.2e} finite {res[cname]['finite']} first {first:.2f}s", flush=True)
    del q, k, v, kc, vc
print("JSON", json.dumps({name: res}))
