#!/bin/bash
# second device call: System 1 (e2e) and the dual agent on more longtail seeds, side by side
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 SDL_VIDEODRIVER=dummy EVAL_BUDGET_S=${BUDGET:-200}
run() { local name=$1 w=$2; shift 2; ( python3 tools/device/ray_free_eval.py eval --workers $w --out $OUT/$name.json "$@" > /tmp/$name.log 2>&1; echo "$name done at $(( $(date +%s) - T0 )) s" ) & }
run A_lt2 7 --agent e2e --suite longtail --seeds 5003:5005
run D_lt2 9 --agent dual --suite longtail --seeds 5003:5005 --s2-latency 0.2
wait
echo "all done at $(( $(date +%s) - T0 )) s"
rm -f $OUT/*.json
for f in /tmp/*.log; do echo "== $f"; tail -5 $f; done > $OUT/logs.txt
