#!/bin/bash
# seventh session's last device call: P2P 5000:5016 with the park assist in charge from where the route shows
# the destination's aisles (369e04c), all 16 drives at once on the box's 16 cores
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 SDL_VIDEODRIVER=dummy EVAL_BUDGET_S=${BUDGET:-30}
python3 tools/device/ray_free_eval.py eval --workers 16 --out $OUT/N2_p2p.json --agent e2e --suite p2p --seeds 5000:5016 > $OUT/N2_p2p.log 2>&1
echo "done at $(( $(date +%s) - T0 )) s"
rm -f $OUT/*.json
