#!/usr/bin/env bash
# Session 10, run 6 (H100): the mma.sync forward's K/V chunks swizzled (NSAJIT_EXP_SWZ=1) against
# padded rows: quick forward matrix, Nsight Compute L2 sectors of the selected forward, and the
# selected / NSA forward timings with and without.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_EXP_SWZ=1 NSAJIT_CACHE_DIR=$W/c1 NSAJIT_GPU_TEST_QUICK=1 timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-swz.log" 2>&1
echo "gpu fwd quick swz rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-swz.log" | head -5 | cut -c1-200
NCU=/usr/local/cuda/bin/ncu
NSAJIT_EXP_SWZ=1 NSAJIT_CACHE_DIR=$W/c1 timeout 150 $NCU --profile-from-start off --section SpeedOfLight --section SourceCounters --section MemoryWorkloadAnalysis --import-source no --kernel-name regex:"selected_fwd" python3 bench/profile_nsa.py --shape paper > "$out/ncu-selected-swz.txt" 2>&1; echo "ncu rc=$?"
grep -E "Duration|L2 Cache Throughput|excessive sectors|Hit Rate" "$out/ncu-selected-swz.txt" | head
for v in "pad 0" "swz 1"; do set -- $v
  NSAJIT_EXP_SWZ=$2 NSAJIT_CACHE_DIR=$W/c$2 timeout 150 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit selected random [main],nsajit selected local [main],nsajit nsa fused [paper]" --no-compile-test --no-png --max-minutes 2.2 --out "$out/bench-$1.json" > "$out/bench-$1.log" 2>&1
  echo "== $1 rc=$?"; grep -E "^\[|selected_fwd" "$out/bench-$1.log" | grep -v ceiling | cut -c1-120
done
