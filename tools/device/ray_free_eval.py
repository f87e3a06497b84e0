"""`dualdrive eval` on a machine without Ray (the lent GPU box): the same evaluation, its episodes run in a
local process pool instead of a Ray cluster, with a wall-clock budget after which no new episode starts
(finished ones are in the journal; the same command resumes)."""
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import dualdrive.bench.evaluate as E

DEADLINE = time.monotonic() + float(os.environ.get("EVAL_BUDGET_S", "1e9"))


def _run_local(cfg, todo, journal, done):
    queue, pending = list(todo), {}
    with ProcessPoolExecutor(cfg.workers) as ex:
        while queue or pending:
            while queue and len(pending) < cfg.workers and time.monotonic() < DEADLINE:
                job = queue.pop(0)
                pending[ex.submit(E.run_job, cfg.agent, job, None)] = job
            if not pending:
                break
            fin, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in fin:
                job = pending.pop(f)
                try:
                    row = f.result()
                except Exception as e:
                    row = E._failed_row(job, f"worker failed: {type(e).__name__}: {e}")
                journal.add(row)
                done(row)
    print(f"eval: {len(queue)} episodes not started (budget)", file=sys.stderr)


E._run_on_ray = _run_local
from dualdrive.cli import app  # noqa: E402

app()
