#!/usr/bin/env bash
# Session 14, run 1 (H100): the dense backward kernels. Base (HEAD 9e93ff6) against a variant
# (the dense Dk > 128 dQ kernel with 64-key chunks, no closing barrier on the wgmma walks):
# each backward launch's GPU ms; then Nsight Compute on the base's compressed [paper] and
# window [main] backward kernels (pipes, shared-memory traffic, warp stalls).
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do
  W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz
done
sweeps() {  # $1 = base|var
  export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache
  for args in "--branch compressed --dk 192 --l 32 --d 16" "--branch compressed --dk 128" \
              "--branch window --dk 192" "--branch window --dk 128"; do
    timeout 90 python3 bench/sweep_tiles.py $args --T 65536 --backward --kernels --tiles 0x0x0 2>&1 \
      | grep -v -i warn | sed "s/^/$1 $args: /" | tee -a $out/sweep.log
  done
}
cat /tmp/nsajit-base/nsajit/BUILD_INFO /tmp/nsajit-var/nsajit/BUILD_INFO
sweeps base; sweeps var; sweeps base; sweeps var
export NSAJIT_LIBRARY=/tmp/nsajit-base/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-base/cache
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
prof() {  # $1 = name, $2 = kernel regex, rest = sweep args
  name=$1; rx=$2; shift 2
  timeout 150 $NCU --clock-control none -k "regex:$rx" -c 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    python3 bench/sweep_tiles.py "$@" --T 32768 --backward --tiles 0x0x0 > $out/ncu-$name.txt 2>&1
  echo "ncu $name rc=$?"; grep -E "Duration|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Stall|Issue Slots Busy|No Eligible" $out/ncu-$name.txt | head -12
}
prof cmp192-dkdv "nsa_compressed_bwd_dkdv" --branch compressed --dk 192 --l 32 --d 16
prof cmp192-dq "nsa_compressed_bwd_dq" --branch compressed --dk 192 --l 32 --d 16
prof win128-dkdv "nsa_window_bwd_dkdv" --branch window --dk 128
timeout 100 $NCU --clock-control none -k "regex:nsa_compressed_bwd_dkdv" -c 1 --metrics \
  sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.avg.per_cycle_active,sm__warps_active.avg.pct_of_peak_sustained_active \
  python3 bench/sweep_tiles.py --branch compressed --dk 192 --l 32 --d 16 --T 32768 --backward --tiles 0x0x0 > $out/ncu-metrics.txt 2>&1
echo "metrics rc=$?"; grep -E "gmma|shared|inst_executed|warps_active" $out/ncu-metrics.txt | head
