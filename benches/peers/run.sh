#!/usr/bin/env bash
# The peer benchmark in one command: installs the system packages the peers
# need (when root and missing), builds every contender and prints the
# Markdown report.
#
#   bash benches/peers/run.sh --quick     # smoke run, well under 2 minutes after the build
#   bash benches/peers/run.sh --full      # the numbers for RESULTS.md
#
# Extra arguments go to the driver (--rounds N, --skip-build, --out FILE).
# PEERS_JOBS=N limits cargo's build jobs; CARGO_TARGET_DIR defaults to
# target/peers so that these builds never contend with the library's.
set -euo pipefail
cd "$(dirname "$0")/../.."

# clang-19: hardened_malloc's C needs C23 (Debian 12's gcc 12 fails);
# libsodium-dev + pkg-config: the `secrets` crate links the system
# libsodium; util-linux: setpriv and prlimit for the density runs.
need=()
command -v clang-19 >/dev/null 2>&1 || need+=(clang-19)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libsodium 2>/dev/null || need+=(libsodium-dev)
{ command -v setpriv && command -v prlimit; } >/dev/null 2>&1 || need+=(util-linux)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "peers: installing ${need[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        # Not fatal: the peers that need them are reported as not built.
        echo "peers: missing ${need[*]} (sudo apt-get install -y ${need[*]})" >&2
    fi
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/peers}"
exec cargo run --release --manifest-path benches/peers/Cargo.toml -p secalloc-peers -- "$@"
