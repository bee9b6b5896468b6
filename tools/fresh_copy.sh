#!/usr/bin/env bash
# fresh_copy.sh DEST: replace DEST by a copy of this checkout's files (tracked and untracked but
# not ignored: no results/, checkpoints/, .snakemake/), for runs that must share nothing with it.
set -euo pipefail
DEST=${1:?usage: tools/fresh_copy.sh DEST}
cd "$(dirname "$0")/.."
rm -rf "$DEST"
mkdir -p "$DEST"
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$DEST"
