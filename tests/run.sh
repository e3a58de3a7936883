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
need openssl openssl   # the chart tests' TLS certificate
need chromium chromium # the live page, rendered by tests/livepage.rs

# The chart tests' Python packages, in a venv of the project's own.
venv=.tools/venv
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c "import helm_python, kubernetes_validate, yaml" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 pytest==9.2.0 PyYAML==6.0.4 \
        || { echo "FAIL: cannot install the chart tests' Python packages" >&2; [ "${CI:-}" = true ] && exit 1; }
fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Each module imports only the layers below it (README, "How it works").
tests/layers.sh

# Every test, then one closing line with the totals over all test binaries
# (cargo's own last line is that of its last binary only).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The Helm chart (after cargo test: it checks the rendered config with target/debug/sluice).
if [ -x "$venv/bin/pytest" ]; then
    "$venv/bin/pytest" -q tests/chart 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
elif [ "${CI:-}" = true ]; then
    echo "FAIL: the chart tests cannot run" >&2
    status=1
fi
set -e
awk '/^test result:/ { passed += $4; failed += $6 }
     /^[0-9]+ (passed|failed)/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) passed += $i; if ($(i+1) ~ /^failed/) failed += $i } }
     END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
