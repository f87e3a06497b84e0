"""The dataset card: what a demonstration dataset holds, computed from the store itself (so it can
be rebuilt at any time with ``dualdrive dataset-card DIR``), as ``card.json`` and ``card.md``.

Only complete episodes count. Hours of driving are simulated seconds (world ticks x dt) over the
whole episodes, not just the recorded frames; the label statistics are over the recorded frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dualdrive.data.format import BevClass, LightState, complete_episodes, read_meta, store_path, write_json_atomic
from dualdrive.world.route import Command

SPEED_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def dataset_card(root: str | Path) -> dict:
    """Every number of the card, from the complete episodes of the store."""
    import zarr
    root = Path(root)
    meta = read_meta(root)
    keys, skipped = complete_episodes(root)
    g_root = zarr.open_group(str(store_path(root)), mode="r")
    n_cmd, n_bev = len(Command), len(BevClass)
    cmd = np.zeros(n_cmd, np.int64)
    light = np.zeros(len(LightState), np.int64)
    bev = np.zeros(n_bev, np.int64)
    reverse = frames = 0
    drive_s = 0.0
    speeds, by_scenario, successes = [], {}, []
    for key in keys:
        g = g_root[key]
        a = dict(g.attrs)
        frames_ep = int(a["frames"])
        frames += frames_ep
        drive_s += float(a["steps"]) * float(a["dt_s"])
        successes.append(bool(a["summary"]["success"]))
        sc = by_scenario.setdefault(a["scenario"], {"episodes": 0, "frames": 0, "successes": 0, "family": a["family"]})
        sc["episodes"] += 1
        sc["frames"] += frames_ep
        sc["successes"] += int(a["summary"]["success"])
        if frames_ep == 0:
            continue
        cmd += np.bincount(np.asarray(g["command"][:], np.int64), minlength=n_cmd)[:n_cmd]
        if "light_state" in g:  # privileged labels: absent from human logs
            light += np.bincount(np.asarray(g["light_state"][:], np.int64), minlength=len(LightState))[:len(LightState)]
        reverse += int((np.asarray(g["plan_gear"][:]) < 0).sum())
        speeds.append(np.asarray(g["speed_mps"][:], np.float64))
        if "bev_semantic" in g:
            bev += np.bincount(np.asarray(g["bev_semantic"][:]).ravel(), minlength=n_bev)[:n_bev]
    sp = np.concatenate(speeds) if speeds else np.zeros(0)
    col = meta["collection"]
    card = {
        "format": meta["format"], "version": meta["version"], "driver": col["agent"],
        "labeller": col.get("labeller", "expert"),
        "suite": col["suite"]["name"], "dart_sigma_mps2": col["dart_noise"], "frame_stride": col["frame_stride"],
        "sampling": col.get("sampling", "uniform"),
        "max_duration_s": col["max_duration_s"], "episodes": len(keys), "incomplete_episodes_skipped": skipped,
        "frames": int(frames), "hours_of_driving": round(drive_s / 3600.0, 4),
        "success_rate": round(float(np.mean(successes)), 4) if successes else None,
        "scenarios": {k: {**v, "success_rate": round(v["successes"] / v["episodes"], 4)} for k, v in sorted(by_scenario.items())},
        "command_histogram": {Command(i).name: int(c) for i, c in enumerate(cmd)},
        "gear_share": {"forward": round(1.0 - reverse / max(frames, 1), 5), "reverse": round(reverse / max(frames, 1), 5)},
        "light_state_histogram": {LightState(i).name: int(c) for i, c in enumerate(light)},
        "bev_class_frequency": {BevClass(i).name: round(float(c) / max(int(bev.sum()), 1), 5) for i, c in enumerate(bev)},
        "speed_mps_quantiles": ({f"q{int(q * 100):02d}": round(float(np.quantile(sp, q)), 3) for q in SPEED_QUANTILES}
                                if len(sp) else {}),
        "speed_mps_mean": round(float(sp.mean()), 3) if len(sp) else None,
    }
    return card


def card_markdown(c: dict) -> str:
    pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    lines = [f"# Demonstration dataset ({c['format']} v{c['version']})", "",
             f"- driver: `{c['driver']}`, labels by `{c['labeller']}`; suite `{c['suite']}`",
             f"- DART sigma: {c['dart_sigma_mps2']} m/s^2; recorded every {c['frame_stride']} ticks "
             f"({10.0 / c['frame_stride']:.1f} Hz at the 10 Hz world), {c.get('sampling', 'uniform')} sampling; "
             f"time limit {c['max_duration_s']} s",
             f"- episodes: **{c['episodes']}** ({c['incomplete_episodes_skipped']} incomplete skipped), "
             f"recorded frames: **{c['frames']}**, driving: **{c['hours_of_driving']:.3f} h**",
             f"- success rate of the collected drives: **{pct(c['success_rate'])}**", "",
             "## Scenario mix", "", "| scenario | family | episodes | frames | success |", "|---|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['family']} | {v['episodes']} | {v['frames']} | {pct(v['success_rate'])} |"
              for k, v in c["scenarios"].items()]
    total = max(c["frames"], 1)
    lines += ["", "## Labels (over recorded frames)", "", "| command | frames | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {pct(v / total)} |" for k, v in c["command_histogram"].items()]
    lines += ["", f"Gear of the expert's plan: forward {pct(c['gear_share']['forward'])}, reverse "
              f"{pct(c['gear_share']['reverse'])}.", "", "| traffic light ahead | frames | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {pct(v / total)} |" for k, v in c["light_state_histogram"].items()]
    lines += ["", "| BEV class | share of cells |", "|---|---:|"]
    lines += [f"| {k} | {pct(v)} |" for k, v in c["bev_class_frequency"].items()]
    q = c["speed_mps_quantiles"]
    lines += ["", "Speed (m/s): " + (", ".join(f"{k} {v:.2f}" for k, v in q.items()) + f", mean {c['speed_mps_mean']:.2f}"
                                     if q else "no frames")]
    return "\n".join(lines) + "\n"


def write_card(root: str | Path) -> dict:
    """Compute the card and write ``card.json`` and ``card.md`` beside ``dataset.json``."""
    root = Path(root)
    card = dataset_card(root)
    write_json_atomic(root / "card.json", card)
    tmp = root / "card.md.tmp"
    tmp.write_text(card_markdown(card))
    tmp.replace(root / "card.md")
    return card
