"""A results.json from an eval journal (the device's farm ran the evaluation's episodes and kept only the
journals): the rows and the run identity as the journal holds them, summarised by the benchmark's own code."""
import json
import sys
from pathlib import Path

from dualdrive.bench.evaluate import EvalConfig, build_results

journal, out, seeds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
lines = journal.read_text().splitlines()
ident = json.loads(lines[0])["run"]
rows = [json.loads(line) for line in lines[1:] if line.strip()]
a, b = (int(x) for x in seeds.split(":"))
extra = {k: ident[k] for k in ("checkpoint", "e2e_guard", "e2e_probe", "vlm", "s2_sim_latency_s") if k in ident}
cfg = EvalConfig(ident["agent"], range(a, b), out, ident["suite"]["name"], None, 16, meta_extra={
    **extra, "machine_note": "device farm (16 CPU processes, no Ray): .exp/farm.sh"})
res = build_results(cfg, ident, rows, 0.0)
out.write_text(json.dumps(res, indent=1, default=str))
print(out, len(rows), "episodes")
