#!/usr/bin/env bash
# Issue 9: the first run on a data set with no options beyond --data, --layout and --run-dir (plus a time budget).
# Run from the repository root with the venv's python on PATH (or PY=...); one run at a time; peaks by GNU time.
# Usage: bash benchmarks/first_run.sh OUT_DIR [MINUTES_2D] [MINUTES_3D]
set -euo pipefail
OUT=${1:?output folder}; M2=${2:-4}; M3=${3:-7}
PY=${PY:-python}
DATA=${DATA:-../shared/data}
mkdir -p "$OUT"
grep -o -w -E "avx2|avx512f|avx512_bf16|amx_bf16|amx_tile" /proc/cpuinfo | sort | uniq -c > "$OUT/cpu_flags.txt" || true

# hippocampus: a seeded 80/20 split of the volumes into two folders (symlinks): train on one, score on the other
"$PY" - "$DATA/msd-hippocampus" "$OUT/hippo" <<'PYEOF'
import os, random, sys
from pathlib import Path
src, dst = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
cases = sorted(p.name for p in (src / "imagesTr").glob("*.nii.gz") if not p.name.startswith("."))
random.Random(0).shuffle(cases)
test = set(cases[: len(cases) // 5])
for part in ("train", "test"):
    for sub in ("imagesTr", "labelsTr"):
        (dst / part / sub).mkdir(parents=True, exist_ok=True)
    if not (dst / part / "dataset.json").exists():
        os.symlink(src / "dataset.json", dst / part / "dataset.json")
    for c in cases:
        if (c in test) == (part == "test"):
            for sub in ("imagesTr", "labelsTr"):
                link = dst / part / sub / c
                if not link.exists():
                    os.symlink(src / sub / c, link)
print(f"hippocampus: {len(cases) - len(test)} training volumes, {len(test)} held out")
PYEOF

run() {  # name, minutes, train args...
  local name=$1 minutes=$2; shift 2
  /usr/bin/time -v "$PY" -m unetpp train "$@" --run-dir "$OUT/$name" --minutes "$minutes" \
    > "$OUT/$name.out" 2> "$OUT/$name.err" || { tail -5 "$OUT/$name.err"; return 1; }
  grep "Maximum resident set size" "$OUT/$name.err"
}
run isbi "$M2" --data "$DATA/isbi2012-em" --layout isbi2012
run dsb "$M2" --data "$DATA/dsb2018" --layout dsb2018
run hippo_run "$M3" --data "$OUT/hippo/train" --layout decathlon
/usr/bin/time -v "$PY" -m unetpp evaluate --checkpoint "$OUT/hippo_run/checkpoints/best.ckpt" \
  --data "$OUT/hippo/test" --layout decathlon --no-hd95 > "$OUT/hippo_eval.out" 2> "$OUT/hippo_eval.err"
cat "$OUT/hippo_eval.out"
