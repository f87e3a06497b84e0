"""Reports from results files: one self-contained HTML page, and a printed comparison of two runs."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path


from dualdrive.bench.evaluate import RESULTS_FORMAT
from dualdrive.bench.stats import compare_metric
from dualdrive.world.scenarios import ConfigError

TABLE_METRICS = ("driving_score", "route_completion", "infraction_score", "success_rate", "pdms", "nc", "dac", "ttc",
                 "ep", "comfort")
PLOT_METRICS = ("driving_score", "route_completion", "pdms", "duration_s")
COMPARE_METRICS = TABLE_METRICS + ("parking_position_error_m", "parking_heading_error_deg", "time_to_park_s")


def load_results(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"results file {str(p)!r} not found")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"results file {str(p)!r} is corrupt (not JSON: {e}); re-run `dualdrive eval` to rebuild it "
                          "from its .episodes.jsonl journal") from None
    if not isinstance(data, dict) or data.get("meta", {}).get("format") != RESULTS_FORMAT or \
            not isinstance(data.get("episodes"), list) or "summary" not in data:
        raise ConfigError(f"{str(p)!r} is not a dualdrive results file (expected format {RESULTS_FORMAT!r}, "
                          "as written by `dualdrive eval --out`)")
    return data


def _label(r: dict) -> str:
    m = r["meta"]
    return f"{m['agent']} on {m.get('suite') or m.get('env')} ({m['seeds']})"


def _fmt(s: dict | None, digits: int = 1) -> str:
    if not s or s.get("mean") is None:
        return "-"
    lo, hi = s["ci95"]
    return f"{s['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _plot(runs: list[dict], metric: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    data = [[e[metric] for e in r["episodes"] if e.get(metric) is not None] for r in runs]
    if not any(data):
        plt.close(fig)
        return ""
    ax.hist(data, bins=20, label=[_label(r) for r in runs], alpha=0.8)
    ax.set_xlabel(metric)
    ax.set_ylabel("episodes")
    ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f'<img alt="{metric}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def html_report(paths: list[str | Path]) -> str:
    runs = [load_results(p) for p in paths]
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>dualdrive report</title><style>",
         "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}",
         "</style></head><body><h1>dualdrive evaluation report</h1>",
         "<p>Scores 0-100; mean [bootstrap 95% interval] over episodes.</p><h2>Summary</h2><table><tr><th>run</th>"]
    h += [f"<th>{m}</th>" for m in TABLE_METRICS] + ["<th>episodes</th><th>failed</th></tr>"]
    for r in runs:
        s = r["summary"]
        h.append(f"<tr><td>{html.escape(_label(r))}</td>" + "".join(f"<td>{_fmt(s.get(m))}</td>" for m in TABLE_METRICS)
                 + f"<td>{s['episodes']}</td><td>{s['failed_episodes']}</td></tr>")
    h.append("</table>")
    for r in runs:
        h.append(f"<h2>{html.escape(_label(r))}</h2><h3>Per scenario</h3><table><tr><th>scenario</th>")
        h += [f"<th>{m}</th>" for m in TABLE_METRICS] + ["<th>episodes</th></tr>"]
        for name, s in r.get("by_scenario", {}).items():
            h.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(s.get(m))}</td>" for m in TABLE_METRICS)
                     + f"<td>{s['episodes']}</td></tr>")
        h.append("</table><h3>Infractions</h3><table><tr><th>type</th><th>count</th></tr>")
        counts = r["summary"].get("infraction_counts", {}) or {"none": 0}
        h += [f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(counts.items())]
        h.append("</table>")
        failed = [e for e in r["episodes"] if not e.get("success")]
        if failed:
            h.append("<h3>Episodes not successful</h3><table><tr><th>episode</th><th>DS</th><th>RC</th><th>why</th>"
                     "<th>video</th></tr>")
            for e in failed:
                why = e.get("error") or ", ".join(sorted(e.get("infractions", {}))) or (
                    "blocked" if e.get("blocked") else "timeout" if e.get("timeout") else "not parked")
                vid = f"<a href='{html.escape(e['video_path'])}'>video</a>" if e.get("video_path") else ""
                h.append(f"<tr><td>{html.escape(e['scenario'])}/{e['seed']}</td><td>{e['driving_score']:.1f}</td>"
                         f"<td>{e['route_completion']:.1f}</td><td>{html.escape(str(why))}</td><td>{vid}</td></tr>")
            h.append("</table>")
        m = r["meta"]
        h.append(f"<p><small>commit {m.get('git_commit')}, {m['workers']} worker(s), {m['wall_time_s']} s wall, "
                 f"{m['wall_s_per_episode']} s per episode, versions {html.escape(json.dumps(m['versions']))}</small></p>")
    h.append("<h2>Distributions</h2>")
    h += [_plot(runs, m) for m in PLOT_METRICS]
    h.append("</body></html>")
    return "\n".join(h)


def compare_rows(a: dict, b: dict) -> list[tuple[str, dict]]:
    out = []
    for m in COMPARE_METRICS:
        c = compare_metric(a["episodes"], b["episodes"], m)
        if c is not None:
            out.append((m, c))
    return out


def compare_text(path_a: str | Path, path_b: str | Path) -> str:
    a, b = load_results(path_a), load_results(path_b)
    lines = [f"A: {_label(a)}  ({path_a})", f"B: {_label(b)}  ({path_b})", "",
             f"{'metric':<28}{'A':>9}{'B':>9}{'B-A':>9}  {'95% interval':<20}{'n':>5}  significant"]
    # episodes in one run only (by scenario and seed), not a metric present in one only (time to park exists only
    # where the car parked; counting those, the line said episodes were missing from runs that had them all)
    keys_a, keys_b = ({(e["scenario"], e["seed"]) for e in r["episodes"]} for r in (a, b))
    unshared = len(keys_a ^ keys_b)
    for m, c in compare_rows(a, b):
        ci = "-" if c["ci95"][0] is None else f"[{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]"
        sig = "yes" if c["significant"] else "no"
        lines.append(f"{m:<28}{c['a']:>9.2f}{c['b']:>9.2f}{c['diff']:>+9.2f}  {ci:<20}{c['n']:>5}  {sig}"
                     + ("" if c["paired"] else " (unpaired)"))
    lines += ["", "A and B are means over the episodes both runs share (same scenario and seed), compared pairwise; "
              "significant means the 95% bootstrap interval of the difference excludes 0 (never with fewer than "
              "2 episodes)."]
    if unshared:
        lines.append(f"{unshared} episode(s) present in only one of the runs are left out of the comparison.")
    return "\n".join(lines)


