#!/usr/bin/env bash
# The one test command for aioloop (README: `./scripts/test.sh`; CI: `.ci/run`).
#
#   ./scripts/test.sh          everything: fmt, clippy (native + windows-gnu),
#                              rustdoc, unit/integration/example/doc tests,
#                              a release run of the tour example, and the
#                              benchmark program in its --smoke mode
#   ./scripts/test.sh --quick  skips the windows-gnu check, the tour and the bench
#
# Needs only rustup's toolchain (cargo, rustc, clippy, rustfmt); it installs the
# rustup target it uses. Safe to run again and again: it writes only to target/.
set -euo pipefail

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h | --help)
            sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test.sh: unknown argument '$arg' (try --quick or --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

WINDOWS_TARGET=x86_64-pc-windows-gnu
started=$SECONDS
passed=()
current=""

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$current" ]; then
        echo
        echo "test.sh: FAILED at step '$current' (exit $rc) after $((SECONDS - started))s;" \
            "passed before it: ${passed[*]:-none}" >&2
    fi
}
trap on_exit EXIT

# step NAME COMMAND... : announce, run, time.
step() {
    local name=$1
    shift
    current=$name
    echo
    echo "==> [$name] $*"
    local t0=$SECONDS
    "$@"
    echo "<== [$name] ok ($((SECONDS - t0))s)"
    passed+=("$name")
    current=""
}

echo "test.sh: testing aioloop in $(pwd) ($([ "$quick" = 1 ] && echo quick || echo full) run)"
echo "test.sh: $(cargo --version); $(rustc --version)"

if [ "$quick" = 0 ]; then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "test.sh: rustup is needed to add the $WINDOWS_TARGET target (or run with --quick)" >&2
        exit 1
    fi
    step rustup-target rustup target add "$WINDOWS_TARGET"
fi

step fmt cargo fmt --all -- --check --color never
step clippy cargo clippy --workspace --all-targets -- -D warnings
if [ "$quick" = 0 ]; then
    # Check only (no linking), so no mingw toolchain is needed.
    step clippy-windows cargo clippy --target "$WINDOWS_TARGET" --lib -- -D warnings
fi
step rustdoc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
step test cargo test --workspace --all-targets
# --- io_uring: the whole native suite again on each Linux backend ----------
# The run above uses Backend::Auto (io_uring on Linux when the kernel allows
# it). Each forced run prints the backend it used (tests/backend.rs).
if [ "$(uname -s)" = Linux ]; then
    cargo test -q --test backend prints_the_backend_of_this_run -- --nocapture 2>/dev/null |
        grep 'aioloop backend of this run' | sed 's/^/[test] /'
    for backend in selector proactor; do
        step "test-$backend" env AIOLOOP_BACKEND=$backend \
            cargo test --workspace --all-targets
        AIOLOOP_BACKEND=$backend cargo test -q --test backend prints_the_backend_of_this_run \
            -- --nocapture 2>/dev/null | grep 'aioloop backend of this run' | sed "s/^/[test-$backend] /"
    done
fi
# --- end io_uring ------------------------------------------------------------
step doctest cargo test --doc
if [ "$quick" = 0 ]; then
    # Smoke test: the README's demo command must build and exit 0.
    step tour bash -c 'cargo run --release --example tour >/dev/null'
    # The benchmark program against tokio and smol, tiny sizes, one round:
    # proves it builds and runs; the figures come from a full run (README).
    step bench-smoke cargo run --release -p aioloop-bench -- --smoke
fi

echo
echo "test.sh: all ${#passed[@]} steps passed (${passed[*]}) in $((SECONDS - started))s" \
    "[$([ "$quick" = 1 ] && echo "quick: skipped windows-gnu check, release tour and bench smoke" || echo full)]"
