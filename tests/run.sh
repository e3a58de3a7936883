#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the tools the tests need,
# then checks formatting and lints, then runs every test.
#
# Under CI=true a tool that cannot be installed is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=no
install_package() {
    local package=$1 sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ "$apt_updated" = no ]; then
        $sudo apt-get update -qq || true
        apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null
}

# need TOOL DEBIAN_PACKAGE
need() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null && return 0
    echo "installing $package (for $tool)"
    install_package "$package" || true
    if ! command -v "$tool" >/dev/null; then
        if [ "${CI:-}" = true ]; then
            echo "FAIL: $tool is required and could not be installed (apt-get install $package)" >&2
            exit 1
        fi
        echo "WARNING: $tool is missing; the tests that need it will say SKIPPED" >&2
    fi
}

need promtool prometheus
need prometheus prometheus

cargo fmt --check
cargo clippy --all-targets -- -D warnings

# Every test, then one closing line with the totals over all test binaries
# (cargo's own last line is that of its last binary only).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
