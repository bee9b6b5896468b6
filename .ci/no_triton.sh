#!/usr/bin/env bash
# Issue 17 item 5, for real: the package installed where Triton and fla have no wheels (macOS).
# A fresh virtual environment gets torch and our dependencies with the platform markers
# evaluated for Darwin (so triton, flash-linear-attention and fla-core are left out), then our
# package without dependencies; in it the CPU code paths run (tests/cpu_paths_without_triton.py,
# from outside the checkout, so the installed package is the one imported) and Snakemake trains,
# exports and analyses one smoke model (results/micro-s/softpick/seed_79/metrics/attention_final.json).
#   bash .ci/no_triton.sh [install|run]   (NO_TRITON_VENV, default /tmp/softpick-no-triton)
# No argument does both. `install` alone builds the venv (network and disk, little CPU: .ci/run
# starts it in the background beside the test command); `run` then reuses a venv that
# `install` finished (its marker file), or installs first.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${NO_TRITON_VENV:-/tmp/softpick-no-triton}
STAGE=${1:-all}
[[ $STAGE == all || $STAGE == install || $STAGE == run ]] || { echo "usage: no_triton.sh [install|run]" >&2; exit 2; }

install_venv() {
requirements=$(mktemp)
# the requirement list as pip would resolve it on macOS (packaging from the calling environment)
python - "$REPO/pyproject.toml" >"$requirements" <<'PY'
import sys, tomllib
from packaging.requirements import Requirement
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for dep in deps:
    req = Requirement(dep)
    if req.marker is None or req.marker.evaluate({"platform_system": "Darwin", "sys_platform": "darwin"}):
        req.marker = None
        print(req)
PY
if grep -Eiq '^(triton|flash-linear-attention|fla-core)\b' "$requirements"; then
    echo "no_triton.sh: a GPU-only dependency survived the Darwin markers:" >&2; cat "$requirements" >&2; exit 1
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0   # the CPU build, first (as .ci/run)
"$VENV/bin/python" -m pip install -q -r "$requirements"
"$VENV/bin/python" -m pip install -q --no-deps "$REPO"
touch "$VENV/.installed"
rm -f "$requirements"
}

if [[ $STAGE == install || ! -f $VENV/.installed ]]; then
    install_venv
fi
[[ $STAGE == install ]] && exit 0
for module in triton fla; do
    if "$VENV/bin/python" -c "import $module" 2>/dev/null; then
        echo "no_triton.sh: $module is importable in $VENV" >&2; exit 1
    fi
done
work=$(mktemp -d)
(cd "$work" && SOFTPICK_REPRO_ATTENTION_BACKEND=auto "$VENV/bin/python" "$REPO/tests/cpu_paths_without_triton.py" "$work")
# the workflow from a fresh copy of the checkout, with this venv's snakemake and python
bash "$REPO/tools/fresh_copy.sh" "$work/repo"
cd "$work/repo"
if ! PATH=$VENV/bin:$PATH snakemake --cores 2 results/micro-s/softpick/seed_79/metrics/attention_final.json \
        --configfile config/smoke.yaml >snakemake.log 2>&1; then
    tail -40 snakemake.log >&2; exit 1
fi
test -s results/micro-s/softpick/seed_79/metrics/attention_final.json
echo "no-triton venv: CPU paths and a smoke model trained, exported and analysed without triton or fla"
rm -rf "$work"
