#!/usr/bin/env bash
# Builds the libFuzzer target with stable Rust (coverage instrumentation via
# stable -C flags, no sanitizer) and runs it for $1 seconds (default 60).
# Needs a C++ compiler for libFuzzer itself (Debian: g++).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions"
target="$(rustc -vV | sed -n "s/^host: //p")"
# With an explicit --target, RUSTFLAGS instrument only the fuzzed code, not build scripts.
cargo build --release --bin differential --target "$target"
mkdir -p corpus
./target/"$target"/release/differential corpus -max_total_time="$seconds" -rss_limit_mb=8192 -timeout=60
