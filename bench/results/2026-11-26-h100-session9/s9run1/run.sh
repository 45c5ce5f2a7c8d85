#!/usr/bin/env bash
# Session 9, run 1 (H100): Nsight Compute of the dense wgmma forward kernels (compressed forward,
# top-n, window forward) of the paper's NSA layer, to see what bounds them.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=/usr/local/cuda/bin/ncu
timeout 200 $NCU --profile-from-start off --set full --import-source no --kernel-name regex:"compressed_fwd|compressed_topn|window_fwd" -o "$W/dense" python3 bench/profile_nsa.py --shape paper > "$out/ncu-run.log" 2>&1; echo "ncu rc=$?"
tail -5 "$out/ncu-run.log"
$NCU -i "$W/dense.ncu-rep" --page details > "$out/ncu-dense-fwd-paper.txt" 2>&1
$NCU -i "$W/dense.ncu-rep" --page raw --csv --metrics smsp__pcsamp_warps_issue_stalled_barrier,smsp__pcsamp_warps_issue_stalled_long_scoreboard,smsp__pcsamp_warps_issue_stalled_wait,smsp__pcsamp_warps_issue_stalled_math_pipe_throttle,smsp__pcsamp_warps_issue_stalled_mio_throttle,smsp__pcsamp_warps_issue_stalled_short_scoreboard,smsp__pcsamp_warps_issue_stalled_selected,smsp__pcsamp_warps_issue_stalled_not_selected,smsp__pcsamp_warps_issue_stalled_dispatch_stall,smsp__pcsamp_warps_issue_stalled_membar,smsp__pcsamp_warps_issue_stalled_sleeping,smsp__pcsamp_warps_issue_stalled_lg_throttle,smsp__pcsamp_warps_issue_stalled_math_pipe_throttle,smsp__pcsamp_warps_issue_stalled_tex_throttle,smsp__pcsamp_warps_issue_stalled_imc_miss,smsp__pcsamp_warps_issue_stalled_branch_resolving,smsp__pcsamp_warps_issue_stalled_no_instructions,smsp__pcsamp_warps_issue_stalled_drain,smsp__pcsamp_sample_count,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum > "$out/ncu-stalls.csv" 2>&1
grep -E "  [a-z_]+(fwd|topn)|Duration|Compute \(SM\) Throughput|L2 Cache Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|Executed Ipc Active" "$out/ncu-dense-fwd-paper.txt" | head -40
cat "$out/ncu-stalls.csv" | cut -c1-400 | head -12
