#!/usr/bin/env bash
# Session 15, run 2 (H100): main 09e28ad (base: the wide dQ ping-pong, the backward tuner) against
# a variant (var) whose dense dQ kernels are wide (two warpgroups, ping-pong, 64-key chunks) for
# Dk <= 128 too: the backward launches' GPU ms twice, the backward matrices on var; then on base
# the backward tuner's Python GPU tests, the window forward over tiles, and `nsajit tune
# --backward` on the paper's configuration at T = 64k.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do
  W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz; cat $W/nsajit/BUILD_INFO
done
use() { export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache; }
sweeps() {  # $1 = base|var
  use $1
  for args in "--branch compressed --dk 128" "--branch window --dk 128" "--branch compressed --dk 128 --l 32 --d 16"; do
    timeout 90 python3 bench/sweep_tiles.py $args --T 65536 --backward --kernels --tiles 0x0x0 2>&1 \
      | grep -v -i warn | sed "s/^/$1 $args: /" | tee -a $out/sweep.log
  done
}
sweeps base; sweeps var; sweeps base; sweeps var
use var
timeout 200 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd-var.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd-var.log; grep "\] FAIL" $out/bwd-var.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd-var.log
use base
timeout 120 python3 -m pytest -q python/tests -k "tune" > $out/pytest-tune.log 2>&1; echo "pytest tune rc=$?"; tail -2 $out/pytest-tune.log
timeout 60 python3 bench/sweep_tiles.py --branch window --T 65536 --tiles 0x0x0,8x8x32,8x8x128,4x4x64,4x4x32,2x2x64 2>&1 \
  | grep -v -i warn | tee $out/window-fwd-tiles.log
export NSAJIT_CACHE_DIR=/tmp/nsajit-base/cache-tune
timeout 240 /tmp/nsajit-base/nsajit/bin/nsajit tune --backward --T 65536 --heads 4 --group 16 --dk 192 --dv 128 \
  --l 32 --d 16 --lsel 64 --n 16 --w 512 --repeats 5 > $out/tune-paper.log 2>&1
echo "tune rc=$?"; grep -v "^\s*$" $out/tune-paper.log | tr '\r' '\n' | grep -E "best|recorded|split" | tail -20
cp /tmp/nsajit-base/cache-tune/tuning/*.tsv $out/ 2>/dev/null; ls $out
