#!/bin/bash
# one device call: closed-loop evaluations on the box's 16 CPU cores (a process pool per eval; no Ray there)
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 SDL_VIDEODRIVER=dummy EVAL_BUDGET_S=${BUDGET:-300}
nproc
run() { local name=$1 w=$2 envs=$3; shift 3; ( env $envs python3 tools/device/ray_free_eval.py eval --workers $w --out $OUT/$name.json "$@" > /tmp/$name.log 2>&1; echo "$name done at $(( $(date +%s) - T0 )) s" ) & }
OLD="DUALDRIVE_E2E_PROBE=0 DUALDRIVE_E2E_GUARD_RADAR=0"
NEW="DUALDRIVE_E2E_PROBE=1"
run A_urban 2 "$NEW" --agent e2e --suite urban --seeds 5004:5012
run A_p2p 3 "$NEW" --agent e2e --suite p2p --seeds 5008:5014
run A_lt 2 "$NEW" --agent e2e --suite longtail --seeds 5002:5003
run B_urban 2 "$OLD" --agent e2e --suite urban --seeds 5004:5012
run B_p2p 3 "$OLD" --agent e2e --suite p2p --seeds 5008:5014
run B_lt 2 "$OLD" --agent e2e --suite longtail --seeds 5002:5003
run D_lt 2 "$NEW" --agent dual --suite longtail --seeds 5002:5003 --s2-latency 0.2
wait
echo "all done at $(( $(date +%s) - T0 )) s"
rm -f $OUT/*.json
for f in /tmp/*.log; do echo "== $f"; tail -25 $f; done > $OUT/logs.txt
ls -la $OUT
