#!/usr/bin/env bash
# Session 8, run 5 (H100), experiment: dense backward tiles with two warpgroups sharing each staged
# chunk: dQ with 8 warps (128 query rows a CTA; NSAJIT_EXP_DQ_WARPS=8) and dK/dV with 128 keys a
# CTA (NSAJIT_EXP_DKDV_KEYS=128), against the defaults (4 warps). Per-kernel times (--profile),
# then the GPU backward matrix with both.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO") + experiment"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
ONLY="nsajit window [main],nsajit window [paper],nsajit cmp32/16+top16 [paper],nsajit cmp64+top16 [main] T=65536 fwdbwd"
for v in base dq8 dkdv128 both; do
  unset NSAJIT_EXP_DQ_WARPS NSAJIT_EXP_DKDV_KEYS
  case $v in dq8) export NSAJIT_EXP_DQ_WARPS=8;; dkdv128) export NSAJIT_EXP_DKDV_KEYS=128;; both) export NSAJIT_EXP_DQ_WARPS=8 NSAJIT_EXP_DKDV_KEYS=128;; esac
  timeout 150 python3 bench/bench_nsa.py --quick --T 64k --profile --only "$ONLY" --max-minutes 2 --out "$out/bench-$v.json" > "$out/bench-$v.log" 2>&1
  echo "== $v rc=$?"; grep -E "^\[.*fwdbwd|^\[.*window.*fwd " "$out/bench-$v.log" | grep -v ceiling | cut -c1-110
  grep -E "kernels: .*bwd_d" "$out/bench-$v.log" | sed 's/; void.*//' | cut -c1-200
done
export NSAJIT_EXP_DQ_WARPS=8 NSAJIT_EXP_DKDV_KEYS=128
timeout 170 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*:GpuBackward.Split*' > "$out/gpu-bwd-both.log" 2>&1
echo "gpu bwd (both) rc=$?"; grep -E " FAIL |PASSED|FAILED|passed|cases" "$out/gpu-bwd-both.log" | head -12 | cut -c1-220
