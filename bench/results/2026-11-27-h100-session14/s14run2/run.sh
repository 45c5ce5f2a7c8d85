#!/usr/bin/env bash
# Session 14, run 2 (H100): the dense backward's L2 reuse (commit in BUILD_INFO: compressed dK/dV
# segment-major, the window's rotated walk, 64-key chunks for the Dk > 128 dQ) against the base
# (9e93ff6): the backward matrices, each backward launch's GPU ms, L2 hit rates by Nsight Compute.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz; cat $W/nsajit/BUILD_INFO; done
export NSAJIT_LIBRARY=/tmp/nsajit-var/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-var/cache
timeout 200 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd.log; grep "\] FAIL" $out/bwd.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd.log
sweeps() {  # $1 = base|var, $2 = backward split (0: automatic)
  export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache
  for args in "--branch compressed --dk 192 --l 32 --d 16" "--branch compressed --dk 128" \
              "--branch window --dk 192" "--branch window --dk 128"; do
    timeout 90 python3 bench/sweep_tiles.py $args --T 65536 --backward --kernels --tiles 0x0x0 --backward-split $2 2>&1 \
      | grep -v -i warn | sed "s/^/$1 split=$2 $args: /" | tee -a $out/sweep.log | grep -o "$1 split=$2 --branch [a-z]* --dk [0-9]*\|bwd_ms[^,]*\|nsa_[a-z_]*dkdv\", [0-9.]*\|nsa_[a-z_]*bwd_dq\", [0-9.]*" | tr '\n' ' '; echo
  done
}
sweeps base 0; sweeps var 0; sweeps base 0; sweeps var 0
export NSAJIT_LIBRARY=/tmp/nsajit-var/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-var/cache
for sp in 2048 1024; do
  timeout 90 python3 bench/sweep_tiles.py --branch compressed --dk 192 --l 32 --d 16 --T 65536 --backward --kernels --tiles 0x0x0 --backward-split $sp 2>&1 \
    | grep -v -i warn | sed "s/^/var split=$sp compressed 192: /" | tee -a $out/sweep.log | grep -o "bwd_ms[^,]*\|nsa_compressed_bwd_dkdv\", [0-9.]*" | tr '\n' ' '; echo
done
prof() {  # $1 = name, $2 = kernel regex, rest = sweep args
  name=$1; rx=$2; shift 2
  timeout 100 ncu --clock-control none -k "regex:$rx" -c 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section WarpStateStats python3 bench/sweep_tiles.py "$@" --T 32768 --backward --tiles 0x0x0 > $out/ncu-$name.txt 2>&1
  echo "ncu $name rc=$?"; grep -E "Duration|DRAM Throughput|L2 Hit Rate|Compute \(SM\) Throughput" $out/ncu-$name.txt | head -6
}
prof cmp192-dkdv "nsa_compressed_bwd_dkdv" --branch compressed --dk 192 --l 32 --d 16
prof win128-dkdv "nsa_window_bwd_dkdv" --branch window --dk 128
