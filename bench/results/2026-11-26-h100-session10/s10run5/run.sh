#!/usr/bin/env bash
# Session 10, run 5 (H100): Nsight Compute of the paper NSA layer's selected forward (what bounds it:
# L2 / DRAM throughput, hit rate, stalls), with SASS source counters.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=/usr/local/cuda/bin/ncu
timeout 200 $NCU --profile-from-start off --set full --import-source no --kernel-name regex:"selected_fwd" -o "$W/slc" python3 bench/profile_nsa.py --shape paper > "$out/ncu-run.log" 2>&1; echo "ncu rc=$?"
$NCU -i "$W/slc.ncu-rep" --page details > "$out/ncu-selected-fwd-paper.txt" 2>&1
$NCU -i "$W/slc.ncu-rep" --page source --csv --print-source sass 2>&1 | xz > "$out/ncu-selected-fwd-sass.csv.xz"
grep -E "Duration|DRAM Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|L2 Hit Rate|Memory Throughput|Issue Slots Busy|Registers Per|Achieved Occupancy|Theoretical Occ|Block Limit|Dynamic Shared|Grid Size|Block Size" "$out/ncu-selected-fwd-paper.txt" | head -30
