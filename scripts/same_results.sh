#!/usr/bin/env bash
# Does a refactor change results?  Runs quick SPOS, DARTS and GDAS searches and a retrain with shipped configs
# at REV (default HEAD) and in this working tree, one thread each,
# and compares genotype.yaml byte for byte and summary.json without timings and paths.
#   bash scripts/same_results.sh REV [OUT]        (FSNAS_DATA_ROOT must point at real Omniglot)
set -euo pipefail
rev=${1:-HEAD}; out=${2:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
base="$out/tree-$rev"
git -C "$here" worktree add --detach "$base" "$rev" > /dev/null
trap 'git -C "$here" worktree remove --force "$base"' EXIT

run() {  # run TREE DEST
  local tree=$1 dest=$2
  mkdir -p "$dest"
  (cd "$tree" && export OMP_NUM_THREADS=1 PYTHONPATH="$tree" FSNAS_CACHE_DIR="$out/cache" &&
   $py -m nas.cli -q search configs/quickstart.yaml search.steps=60 search.checkpoint_every=30 \
       search.evolution.generations=2 --out "$dest/spos" &&
   $py -m nas.cli -q search configs/search/omniglot_darts_cpu.yaml search.steps=20 search.evolution.eval_episodes=10 \
       --out "$dest/darts" &&
   $py -m nas.cli -q search configs/search/omniglot_darts_cpu.yaml search.sampler=gdas \
       search.space_options.weighting=gumbel search.steps=20 search.evolution.eval_episodes=10 --out "$dest/gdas" &&
   $py -m nas.cli -q retrain configs/quickstart.yaml train.steps=100 train.val_every=50 eval.episodes=100 \
       --out "$dest/retrain") > "$dest.log" 2>&1
  for d in spos darts gdas retrain; do
    echo "$d genotype.yaml $(sha256sum < "$dest/$d/genotype.yaml" | cut -d' ' -f1)"
    $py - "$dest/$d/summary.json" <<'PY'
import json, sys
drop = {"run", "search_seconds", "seconds", "episodes_per_second", "environment"}
def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items() if k not in drop and not k.endswith("_seconds")}
    return [clean(v) for v in x] if isinstance(x, list) else x
print(json.dumps(clean(json.load(open(sys.argv[1]))), sort_keys=True))
PY
  done > "$dest.txt"
}

run "$base" "$out/before"
run "$here" "$out/after"
if diff "$out/before.txt" "$out/after.txt"; then echo "same results ($out)"; else echo "results differ ($out)"; exit 1; fi
