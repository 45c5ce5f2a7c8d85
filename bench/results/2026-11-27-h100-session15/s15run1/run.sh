#!/usr/bin/env bash
# Session 15, run 1 (H100): FA3 ping-pong for the dense dK/dV and wide dQ kernels (var, branch
# wip/pp2) against main 66518c2 (base): the backward matrices on var, then each backward launch's
# GPU ms for both, twice, alternating.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do
  W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz; cat $W/nsajit/BUILD_INFO
done
export NSAJIT_LIBRARY=/tmp/nsajit-var/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-var/cache
timeout 200 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd-var.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd-var.log; grep "\] FAIL" $out/bwd-var.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd-var.log
sweeps() {  # $1 = base|var
  export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache
  for args in "--branch compressed --dk 192 --l 32 --d 16" "--branch compressed --dk 128" \
              "--branch window --dk 192" "--branch window --dk 128"; do
    timeout 90 python3 bench/sweep_tiles.py $args --T 65536 --backward --kernels --tiles 0x0x0 2>&1 \
      | grep -v -i warn | sed "s/^/$1 $args: /" | tee -a $out/sweep.log
  done
}
sweeps base; sweeps var; sweeps base; sweeps var
