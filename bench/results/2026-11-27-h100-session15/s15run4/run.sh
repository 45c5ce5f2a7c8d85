#!/usr/bin/env bash
# Session 15, run 4 (H100): Nsight Compute on the selected branch's backward kernels of the paper's
# head dims (Dk = 192, G = 16, T = 32k), random then local indices (sweep_tiles' order), to see what
# bounds them for the next session: bwd_dkdv, and the dQ schedule's two kernels.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
prof() {  # $1 = name, $2 = kernel regex, $3 = launches to profile
  timeout 200 $NCU --clock-control none -k "regex:$2" -c $3 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    python3 bench/sweep_tiles.py --branch selected --dk 192 --T 32768 --backward --tiles 0x0x0 > $out/ncu-$1.txt 2>&1
  echo "ncu $1 rc=$?"; grep -E "nsa_selected|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|L2 Hit|DRAM Throughput" $out/ncu-$1.txt | head -40
}
prof slc192-dkdv "nsa_selected_bwd_dkdv" 2
prof slc192-dq "nsa_selected_bwd_dq" 4
