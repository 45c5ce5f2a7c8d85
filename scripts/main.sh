#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, then show what nsajit
# does for the paper's configuration (bf16, Dk=Dv=128, H=4, G=16, l=32, d=16,
# l'=64, n=16, w=512):
#   - nsajit info     versions, cache directory, GPU
#   - nsajit compile  generates the three forward kernels, prints their
#                     resources (CTA, shared memory, registers via ptxas)
#   - nsajit check    runs them on the GPU against the float64 reference
#                     (skipped, and says so, on a machine without a GPU)
# Extra arguments go to compile and check, e.g. scripts/main.sh --group 4 --dk 192
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
nsajit="${NSAJIT_BUILD_DIR:-$root/build}/bin/nsajit"
"$nsajit" info
"$nsajit" compile "$@"
"$nsajit" check --heads 1 "$@"
