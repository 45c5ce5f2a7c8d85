#!/usr/bin/env bash
# Session 6, run 11 (H100): dK/dV split length with the wgmma kernels (NSA [paper], per-kernel times).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
for split in 0 1024 4096 8192; do
  timeout 120 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit nsa fused" --backward-split $split \
    --max-minutes 1.5 --no-png --out "$out/bench-split$split.json" > "$out/bench-split$split.log" 2>&1
  echo "split $split rc=$?"; grep -E "^\[" "$out/bench-split$split.log" | grep nsa | cut -c1-150
  python3 - "$out/bench-split$split.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for c in d["cases"]:
    r = c["results"].get("fwdbwd", {})
    if "kernels" in r:
        print("   ", {k: round(v, 2) for k, v in r["kernels"].items() if "dkdv" in k})
PY
done
