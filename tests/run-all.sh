#!/usr/bin/env bash
# The whole test suite, as the README's test command. Installs what the tests
# need (util-linux for setpriv/prlimit) when it is missing, then runs the unit
# and integration tests, the doc tests, and the loom models.
set -euo pipefail
cd "$(dirname "$0")/.."

# util-linux: setpriv and prlimit (unprivileged re-execution); the rest are
# the real programs the LD_PRELOAD tests run, and the compilers for their C
# and C++ test programs.
need=()
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v git >/dev/null 2>&1 || need+=(git)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v objdump >/dev/null 2>&1 || need+=(binutils) # tests/no_panic_paths.rs
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${need[@]}"
    else
        echo "missing: ${need[*]} (install them, e.g. sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi

echo "== unit, integration and doc tests (tests/preload.rs builds the LD_PRELOAD library itself)"
# The lock-order checker (src/sync/rank.rs) is on for the whole suite: an
# acquisition out of rank order aborts with both lock names.
export RUSTFLAGS="${RUSTFLAGS:-} --cfg secalloc_lockdep --cfg secalloc_test_hooks"
cargo test --release --all-targets --no-fail-fast
cargo test --release --doc
unset RUSTFLAGS

echo "== loom models (bounded preemption)"
LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}" RUSTFLAGS="--cfg loom" \
    CARGO_TARGET_DIR=target/loom cargo test --release --test 'loom_*'
