#!/usr/bin/env bash
# Wheels for a GPU machine whose image already has Python 3.12, CUDA torch and Triton but not the
# rest of this project's dependencies (the lent H200 has none of snakemake, lm-eval, the
# quantizers or fla, and no package index). Run it here, in the project's venv (the CPU install of
# README.md); it downloads cp312 manylinux wheels of every installed distribution that the image
# lacks, at the versions installed here, into DIR (default .whl/):
#
#   bash tools/gpu_wheels.sh [DIR] [CUDA]
#
# CUDA (default 130, the lent machine's torch cu130) slims the two big wheels so that everything
# travels in one device call (64 MiB): bitsandbytes keeps only its libbitsandbytes_cuda$CUDA.so
# and CPU library, pulp only its linux/i64 solver (Snakemake's ILP scheduler).
#
# Then on the GPU machine:  pip install --no-index --no-deps --target /tmp/site DIR/*.whl
# and PYTHONPATH=/tmp/site:$PWD/src. torch, triton and the CUDA libraries are never downloaded:
# the machine's own CUDA build is used (which versions ran: README.md, "GPU install").
# The list of what the image already holds is tools/gpu_image_packages.txt (read off the lent
# machine's package list); transformers and tokenizers are carried anyway so that the GPU runs use
# the versions pinned in pyproject.toml, not the image's.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
cuda=${2:-130}
mkdir -p "$dir"
always_carry="transformers tokenizers"
never_carry="torch triton softpick-repro"
python - "$always_carry" "$never_carry" > "$dir/requirements.txt" <<'PY'
import sys
from importlib import metadata
norm = lambda n: n.lower().replace("_", "-")
always, never = (set(map(norm, s.split())) for s in sys.argv[1:3])
image = {norm(l.strip()) for l in open("tools/gpu_image_packages.txt") if l.strip() and not l.startswith("#")}
seen = {}
for dist in metadata.distributions():
    name = norm(dist.metadata["Name"])
    if name in never or name.startswith("nvidia-") or name.startswith("cuda-"):
        continue
    if name in image and name not in always:
        continue
    seen[name] = dist.version
for name in sorted(seen):
    print(f"{name}=={seen[name]}")
PY
echo "carrying $(wc -l < "$dir/requirements.txt") distributions (list: $dir/requirements.txt)"
plats=()
for p in manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do plats+=(--platform "$p"); done
# One at a time: a distribution published only as a source archive (connection_pool, for one) is
# built into a pure-Python wheel here instead.
while read -r req; do
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plats[@]}" -d "$dir" "$req" 2>/dev/null ||
    python -m pip wheel -q --no-deps -w "$dir" "$req" 2>/dev/null ||
    { echo "no cp312 wheel for $req" >&2; exit 1; }
done < "$dir/requirements.txt"
python - "$dir" "$cuda" <<'PY'
import pathlib, re, sys, zipfile
wheel_dir, cuda = pathlib.Path(sys.argv[1]), sys.argv[2]
drop = {
    "bitsandbytes-": lambda n: re.search(r"libbitsandbytes_cuda(\d+)", n) and f"cuda{cuda}." not in n,
    "pulp-": lambda n: "solverdir/cbc/" in n and "solverdir/cbc/linux/i64/" not in n,
}
for prefix, unwanted in drop.items():
    for whl in wheel_dir.glob(prefix + "*.whl"):
        slim = whl.with_suffix(".slim")
        with zipfile.ZipFile(whl) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if not unwanted(item.filename):
                    dst.writestr(item, src.read(item))
        slim.replace(whl)
PY
du -sh "$dir"
