#!/usr/bin/env bash
# Checks that each top-level module of src/ imports only modules of the
# layers below its own (README, "How it works"). A module that names
# another of its own layer or of a higher one is a failure: that is how
# import cycles start. Comments are not imports.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bottom to top. Modules on one line form a layer and do not import each other.
layers=(
    "logging"
    "config cli load_report probe routing upstream metrics history"
    "pods supervise server kubernetes telemetry"
    "actuator"
    "autoscaler"
    "service"
    "proxy"
    "shared"
    "admin webhook predictor"
    "gateway sidecar"
)

declare -A layer_of
for i in "${!layers[@]}"; do
    for module in ${layers[$i]}; do
        layer_of[$module]=$i
    done
done

failures=0
for path in src/*.rs src/*/; do
    module=$(basename "$path" .rs)
    case $module in lib | main) continue ;; esac
    if [ -z "${layer_of[$module]:-}" ]; then
        echo "layers: src/$module is in no layer; add it to tests/layers.sh and the README" >&2
        failures=$((failures + 1))
        continue
    fi
    own=${layer_of[$module]}
    # Every `crate::name` outside comments, file by file.
    while read -r file; do
        for used in $(grep -v '^\s*//' "$file" | grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u); do
            [ "$used" = "$module" ] && continue
            theirs=${layer_of[$used]:-}
            if [ -z "$theirs" ]; then
                echo "layers: $file uses crate::$used, which is in no layer" >&2
                failures=$((failures + 1))
            elif [ "$theirs" -ge "$own" ]; then
                echo "layers: $file ($module, layer $own) imports crate::$used (layer $theirs)" >&2
                failures=$((failures + 1))
            fi
        done
    done < <(find "$path" -name '*.rs' | sort)
done

if [ "$failures" -gt 0 ]; then
    echo "layers: $failures import(s) against the layering" >&2
    exit 1
fi
echo "layers: every module imports only the layers below it"
