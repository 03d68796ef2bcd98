#!/bin/sh
# The validation's twins more ways (sim/report.py TWIN_SETS), for the REPORT's host_scaling table.
# The main set (data/validation/: from local.json, each twin moved to its run's probed host speed)
# is made by `dtq validate data/experiments/validation.yaml`. Each other set simulates the same real
# runs in a scratch root of links to them (so the main twins stay), then writes its tables to
# data/validation/<set>/. A set is <folder>:<calibration>:<host_scale>:
#   after:local-after:true            the calibration made right after the runs, moved
#   unscaled:local:false              the main calibration, on its own host speed
#   after-unscaled:local-after:false
#   rounds-a:local-rounds-a:true      two later calibrations made in 3 interleaved rounds, moved
#   rounds-b:local-rounds-b:true
# A set whose calibration file is missing is skipped.
# Usage: sh data/validation/variants.sh [set ...]   (from the repository root; ~1-2 min per set)
set -eu
DTQ=${DTQ:-.venv/bin/dtq}
SETS=${*:-"after:local-after:true unscaled:local:false after-unscaled:local-after:false rounds-a:local-rounds-a:true rounds-b:local-rounds-b:true"}
SCRATCH=$(mktemp -d /tmp/dtq-variants-XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
for spec in $SETS; do
    set=${spec%%:*} rest=${spec#*:}
    cal=${rest%%:*} scale=${rest#*:}
    if [ ! -f "data/calibration/$cal.json" ]; then
        echo "data/validation/$set: skipped (no data/calibration/$cal.json)"
        continue
    fi
    mkdir -p "$SCRATCH/$set/runs"
    for d in data/runs/real-*-validation*; do ln -s "$PWD/$d" "$SCRATCH/$set/runs/"; done
    sed -e "s/^calibration: local\$/calibration: $cal/" -e "s/^host_scale: true/host_scale: $scale/" \
        data/experiments/validation.yaml > "$SCRATCH/$set/validation.yaml"
    grep -q "^calibration: $cal\$" "$SCRATCH/$set/validation.yaml"
    grep -q "^host_scale: $scale" "$SCRATCH/$set/validation.yaml"
    $DTQ validate "$SCRATCH/$set/validation.yaml" --sim --table --out "$SCRATCH/$set/runs" \
        --tables "data/validation/$set" > "$SCRATCH/$set/log.txt"
    echo "data/validation/$set: $(grep -c '^simulated' "$SCRATCH/$set/log.txt" || true) twins"
done
