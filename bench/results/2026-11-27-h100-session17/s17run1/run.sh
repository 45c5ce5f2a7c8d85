#!/usr/bin/env bash
# Session 17, run 1 (H100): where the window [main] kernels lose their time (Nsight Compute,
# T = 64k, Dk = Dv = 128, G = 16, w = 512: the forward, dK/dV and dQ; tensor-pipe, shared-memory
# and L2 utilisation, stall reasons) and the window forward over a few tiles.
out="$1"; mkdir -p "$out/logs"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
STALLS=$(for r in barrier long_scoreboard wait math_pipe_throttle short_scoreboard membar mio_throttle lg_throttle \
  no_instruction dispatch_stall sleeping selected not_selected misc branch_resolving drain; do
  printf "smsp__average_warps_issue_stalled_%s_per_issue_active.ratio," $r; done)
EXTRA="sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,lts__t_sectors.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum.per_second,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,smsp__inst_executed.sum,sm__cycles_elapsed.avg.per_second"
python3 bench/sweep_tiles.py --branch window --dk 128 --T 65536 --backward --kernels \
  --tiles 0x0x0,8x8x32,4x4x64,8x8x128,4x4x128 > $out/logs/sweep.log 2>&1; echo "sweep rc=$?"; cat $out/logs/sweep.log | cut -c1-900
prof() {  # $1 = name, $2 = kernel regex
  name=$1 re=$2
  timeout 150 $NCU --clock-control none -k "regex:$re" --launch-skip 0 -c 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats \
    --section Occupancy --section LaunchStats --metrics "${STALLS%,},$EXTRA" \
    python3 bench/sweep_tiles.py --branch window --dk 128 --T 65536 --backward --tiles 0x0x0 > $out/logs/ncu-$name.txt 2>&1
  echo "ncu $name rc=$?"; grep -E "Duration|Registers Per|Issue Slots Busy|L2 Hit|Compute \(SM\) Th|Memory Throughput|stalled|pct_of_peak|per_second|bank_conflicts|inst_executed.sum|Pipe|Shared" $out/logs/ncu-$name.txt | head -60
}
prof win-fwd "nsa_window_fwd"
prof win-dkdv "nsa_window_bwd_dkdv"
prof win-dq "nsa_window_bwd_dq"
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
