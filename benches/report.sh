#!/usr/bin/env bash
# The README's performance tables in one command: runs the in-process
# allocator comparison, the Secret-vs-ring comparison and the preload
# comparison (full scale, interleaved rounds, CPU-time medians) and prints
# them as Markdown with the machine and commit they came from.
#
#   bash benches/report.sh > /tmp/report.md      # about 6-8 minutes on 2 cores
#
# Needs cc, sqlite3 and python3 for the preload part (`.ci/run` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown),"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r | cut -d- -f1)."
echo
echo '`cargo bench --bench alloc_compare` (process CPU time):'
echo
cargo bench -q --bench alloc_compare 2>/dev/null | grep -E '^\||rounds'
echo
echo '`cargo bench --bench secret_vs_ring`:'
echo
cargo bench -q --bench secret_vs_ring 2>/dev/null | grep -E '^\||rounds|median'
echo
echo '`cargo bench --bench preload_compare` (each child'"'"'s CPU time):'
echo
cargo bench -q --bench preload_compare 2>/dev/null | grep -E '^\||rounds'
