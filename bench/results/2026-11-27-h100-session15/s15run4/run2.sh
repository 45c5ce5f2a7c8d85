#!/usr/bin/env bash
# Session 15, run 4b: as run.sh, on the local indices' launches (sweep_tiles runs random first:
# 12 backward calls, 1 warm-up + 10 timed + 1 for the gradients, so skip 12 dK/dV / 24 dQ launches).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
prof() {  # $1 = name, $2 = kernel regex, $3 = launches to skip, $4 = launches to profile
  timeout 200 $NCU --clock-control none -k "regex:$2" --launch-skip $3 -c $4 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    python3 bench/sweep_tiles.py --branch selected --dk 192 --T 32768 --backward --tiles 0x0x0 > $out/ncu-$1.txt 2>&1
  echo "ncu $1 rc=$?"; grep -E "nsa_selected|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|L2 Hit|DRAM Throughput|Compute \(SM\) Th" $out/ncu-$1.txt | head -40
}
prof slc192-dkdv-local "nsa_selected_bwd_dkdv" 12 1
prof slc192-dq-local "nsa_selected_bwd_dq" 24 2
