#!/usr/bin/env bash
# Session 15, run 7 (H100): the selected dQ union tiles (wgmma) with Q and dO held in registers
# (var, uncommitted on 075da85) against 0726108 (base, the same kernels as 075da85): the backward
# matrices on var, then each selected backward launch (random and local indices) twice, alternating.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do
  W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz; cat $W/nsajit/BUILD_INFO
done
use() { export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache; }
use var
timeout 200 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd-var.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd-var.log; grep "\] FAIL" $out/bwd-var.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd-var.log
sweeps() {  # $1 = base|var
  use $1
  for dk in 192 128; do
    timeout 90 python3 bench/sweep_tiles.py --branch selected --dk $dk --T 65536 --backward --kernels --tiles 0x0x0 2>&1 \
      | grep -v -i warn | sed "s/^/$1 dk$dk: /" | tee -a $out/sweep.log
  done
}
sweeps base; sweeps var; sweeps base; sweeps var
