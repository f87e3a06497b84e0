#!/bin/bash
# seventh session's device call: System 1 with the red-light rule and the parking assist (the agent as shipped
# since) on more seeds than the 2-core machine runs in a session: P2P 5000:5016, urban 5000:5012, parking
# 5000:5008. The modular agent (the parking assist) needs filterpy, carried in .whl/ with the rest.
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 SDL_VIDEODRIVER=dummy EVAL_BUDGET_S=${BUDGET:-300}
nproc
run() { local name=$1 w=$2; shift 2; ( python3 tools/device/ray_free_eval.py eval --workers $w --out $OUT/$name.json "$@" > /tmp/$name.log 2>&1; echo "$name done at $(( $(date +%s) - T0 )) s" ) & }
run N_p2p 9 --agent e2e --suite p2p --seeds 5000:5016
run N_urban 4 --agent e2e --suite urban --seeds 5000:5012
run N_park 3 --agent e2e --suite parking --seeds 5000:5008
wait
echo "all done at $(( $(date +%s) - T0 )) s"
rm -f $OUT/*.json
for f in /tmp/*.log; do echo "== $f"; tail -25 $f; done > $OUT/logs.txt
ls -la $OUT
