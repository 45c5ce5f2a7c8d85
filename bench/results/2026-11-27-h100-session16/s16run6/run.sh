#!/usr/bin/env bash
# Session 16, run 6 (H100): Nsight Compute on the final code (commit in BUILD_INFO), for the next
# session: the compressed [paper] dK/dV and dQ (the largest backward kernels; stall reasons: do
# they wait on their copies, at the fence, or at the CTA barrier?), and the selected [paper] dK/dV
# on local indices after the pivot walk (its L2 hit rate was 11 % in s15run4). T = 32k.
out="$1"; mkdir -p "$out/logs"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
STALLS=$(for r in barrier long_scoreboard wait math_pipe_throttle short_scoreboard membar mio_throttle lg_throttle \
  no_instruction dispatch_stall sleeping selected not_selected misc branch_resolving drain; do
  printf "smsp__average_warps_issue_stalled_%s_per_issue_active.ratio," $r; done)
prof() {  # $1 = name, $2 = kernel regex, $3 = launches to skip, $4 = launches to profile, then the sweep's arguments
  name=$1 re=$2 skip=$3 count=$4; shift 4
  timeout 200 $NCU --clock-control none -k "regex:$re" --launch-skip $skip -c $count \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    --section Occupancy --section LaunchStats --metrics "${STALLS%,}" \
    python3 bench/sweep_tiles.py "$@" --T 32768 --backward --tiles 0x0x0 > $out/logs/ncu-$name.txt 2>&1
  echo "ncu $name rc=$?"; grep -E "nsa_|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|L2 Hit|DRAM Throughput|Compute \(SM\) Th|stalled" $out/logs/ncu-$name.txt | head -40
}
prof cmp192-dkdv "nsa_compressed_bwd_dkdv" 0 1 --branch compressed --dk 192 --l 32 --d 16
prof cmp192-dq "nsa_compressed_bwd_dq" 0 1 --branch compressed --dk 192 --l 32 --d 16
prof slc192-dkdv-local "nsa_selected_bwd_dkdv" 12 1 --branch selected --dk 192
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
