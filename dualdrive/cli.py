"""The ``dualdrive`` command line: thin typer commands over library functions."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dualdrive.world.scenarios import ConfigError, EventConfig, ScenarioConfig

# no emoji or markup in what we print: "seeds 0:100" must not turn into an emoji
_console = Console(emoji=False, markup=False, highlight=False, soft_wrap=True)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="dualdrive: end-to-end driving on highway-env")
err = Console(stderr=True, soft_wrap=True)  # one-line errors, however narrow the terminal


def _fail(msg: str) -> None:
    err.print(f"[red]error:[/red] {msg}")
    raise typer.Exit(2)


@app.callback()
def main() -> None:
    """dualdrive command line."""


S2_CONFIDENCE_HELP = ("--agent dual: act on System 2 only when its confidence in its first meta-action is at least "
                      "this (0-1; the builtin VLM gives one; `dualdrive eval-vlm` shows how far it can be trusted)")
GUARD_HELP = ("--agent e2e/dual: check System 1's plan against the LiDAR (and, at speed, the radar) before it is "
              "driven (the plan guard, dualdrive.agents.guard; default: $DUALDRIVE_E2E_GUARD, else on)")
PROBE_HELP = ("--agent e2e/dual: below the speed limit, ask System 1 what it would do at the limit and, where it "
              "would hold that speed, speed up (the speed probe against the inertia problem, "
              "dualdrive.agents.e2e.probe; default: $DUALDRIVE_E2E_PROBE, else on)")
LIGHTS_HELP = ("--agent e2e/dual: stop System 1's plan short of a junction whose light the camera shows red (the "
               "red-light rule, dualdrive.agents.e2e.lights; default: $DUALDRIVE_E2E_LIGHTS, else on)")
PARK_ASSIST_HELP = ("--agent e2e/dual: in car parks the modular pipeline's parking function drives (leaving the spot, "
                    "parking at the destination; dualdrive.agents.e2e.park_assist; default: $DUALDRIVE_E2E_PARK_ASSIST, "
                    "else on)")
YIELD_HELP = ("--agent e2e/dual: at a left turn, hold System 1 3 m into the junction while oncoming traffic the "
              "radar shows would reach the turn within the critical gap (dualdrive.agents.e2e.yielding; default: "
              "$DUALDRIVE_E2E_YIELD, else on)")
TURN_KEEPING_HELP = ("--agent e2e/dual: through a left turn, keep System 1's plan within 1 m of the route's lane "
                     "(dualdrive.agents.e2e.turn_keeping; default: $DUALDRIVE_E2E_TURN_KEEPING, else on)")
LANE_CHANGE_HELP = ("--agent e2e/dual: where the navigation asks for a lane change, lay System 1's plan across to the "
                    "next lane once the LiDAR shows a gap there (dualdrive.agents.e2e.lane_change; default: "
                    "$DUALDRIVE_E2E_LANE_CHANGE, else on)")
S2_LATENCY_HELP = ("--agent dual: System 2 asked in step with the simulation, its answer handed over this many s of "
                   "simulation time after its frame, so the run is reproducible (default: its own thread, real latency)")


@app.command()
def drive(agent: str = typer.Option("expert", help="agent name or module:Class"),
          scenario: str = typer.Option("p2p", help="highway, urban, parking, p2p or a dualdrive gym id"),
          seed: int = typer.Option(0, help="episode seed (< 5000: development)"),
          out: Path = typer.Option(Path("runs/drive"), help="output directory"),
          config: Optional[Path] = typer.Option(None, help="scenario YAML file (keys of ScenarioConfig)"),
          events: bool = typer.Option(False, "--events", help="switch on every long-tail event of the family"),
          video: bool = typer.Option(True, help="write video.mp4"),
          checkpoint: Optional[Path] = typer.Option(None, help="E2E model checkpoint (.safetensors) for --agent e2e "
                                                    "(default: $DUALDRIVE_E2E_CHECKPOINT, else the shipped one)"),
          instruction: Optional[str] = typer.Option(None, help='what the passenger says, e.g. "drive gently, the baby '
                                                    'is asleep" (see `dualdrive instruct`)'),
          vlm: Optional[str] = typer.Option(None, help="System 2 of --agent dual: builtin, builtin:CHECKPOINT, "
                                            "hf:MODEL_DIR or openai:BASE_URL, optionally after process: (default: $DUALDRIVE_VLM_BACKEND, else builtin)"),
          s2_latency: Optional[float] = typer.Option(None, help=S2_LATENCY_HELP),
          s2_min_confidence: Optional[float] = typer.Option(None, help=S2_CONFIDENCE_HELP),
          guard: Optional[bool] = typer.Option(None, "--guard/--no-guard", help=GUARD_HELP),
          probe: Optional[bool] = typer.Option(None, "--probe/--no-probe", help=PROBE_HELP),
          lights: Optional[bool] = typer.Option(None, "--lights/--no-lights", help=LIGHTS_HELP),
          park_assist: Optional[bool] = typer.Option(None, "--park-assist/--no-park-assist", help=PARK_ASSIST_HELP),
          yielding: Optional[bool] = typer.Option(None, "--yield/--no-yield", help=YIELD_HELP),
          turn_keeping: Optional[bool] = typer.Option(None, "--turn-keeping/--no-turn-keeping", help=TURN_KEEPING_HELP),
          lane_change: Optional[bool] = typer.Option(None, "--lane-change/--no-lane-change", help=LANE_CHANGE_HELP)
          ) -> None:
    """Drive one episode; write DIR/video.mp4, DIR/summary.json and DIR/report.md."""
    from dualdrive.agents.registry import load_agent
    from dualdrive.run.drive import drive_episode, resolve_scenario
    _use_checkpoint(checkpoint)
    _use_guard(guard)
    _use_probe(probe)
    _use_rules(lights, park_assist, yielding, turn_keeping, lane_change)
    _use_vlm(vlm)
    _use_s2_latency(s2_latency)
    _use_s2_confidence(s2_min_confidence)
    try:
        family, _ = resolve_scenario(scenario)
        cfg = ScenarioConfig.from_file(config) if config else ScenarioConfig(family=family)
        if config and cfg.family != family:
            _fail(f"config file family {cfg.family!r} does not match --scenario {scenario!r}")
        if events:
            cfg = ScenarioConfig.from_dict({**cfg.to_dict(), "events": EventConfig.all_on(family).__dict__})
        drv = load_agent(agent)
        notes = None
        if instruction is not None:
            drv, notes = _instructed(drv, instruction)
        with Progress(TextColumn("[bold]drive[/bold] {task.description}"), BarColumn(),
                      TextColumn("{task.completed:.0f}/{task.total:.0f} s sim"), TimeElapsedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task(f"{agent} on {scenario} seed {seed}", total=cfg.time_limit_s)
            summary = drive_episode(drv, scenario, seed, out, cfg, video,
                                    on_step=lambda t, T: bar.update(task, completed=t), notes=notes)
    except ConfigError as e:
        _fail(str(e))
    ok = "success" if summary["success"] else "failed"
    extra = ""
    if "parking_position_error_m" in summary:
        extra = (f", parked {summary['parked']} ({summary['parking_position_error_m']:.2f} m, "
                 f"{summary['parking_heading_error_deg']:.1f} deg)")
    _console.print(f"{ok}: RC {summary['route_completion']:.1f}%, {summary['collisions']} collisions, "
                    f"{len(summary['infractions'])} infractions, {summary['duration_s']:.1f} s{extra} -> {out}")


def _instructed(driver, text: str):
    """The driver wrapped to honour the passenger's instruction, and the notes for the report; an
    instruction the car has to ask about ends the command with its question."""
    from dualdrive.instructions.agent import InstructedAgent
    from dualdrive.instructions.intent import Status
    from dualdrive.instructions.parser import InstructionError, InstructionParser
    try:
        u = InstructionParser().understand(text)
    except InstructionError as e:
        _fail(str(e))
    if u.status == Status.CLARIFY:
        _fail(f"the car asks: {u.reply}")
    _console.print(f"the car: {u.reply}")
    unsupported = InstructedAgent.unsupported(u.intent)
    for part in unsupported:
        err.print(f"note: not acted on yet: {part}")
    notes = {"instruction": {**u.to_json(), "unsupported": unsupported}}
    return InstructedAgent(driver, u.intent), notes


@app.command()
def batch(agent: str = typer.Option("expert", help="agent name or module:Class"),
          scenario: str = typer.Option("p2p", help="highway, urban, parking or p2p"),
          seeds: str = typer.Option("0:10", help="A:B, as Python's range (B excluded)"),
          events: bool = typer.Option(False, "--events", help="switch on every long-tail event of the family"),
          workers: int = typer.Option(2, min=1, help="parallel worker processes"),
          out: Optional[Path] = typer.Option(None, help="write all summaries to this JSON file")) -> None:
    """Drive many seeds and print success rate, collisions and every failure with its reason."""
    import json

    from dualdrive.run.batch import failure_reason, run_batch
    from dualdrive.run.drive import resolve_scenario
    try:
        family, _ = resolve_scenario(scenario)
        a, _, b = seeds.partition(":")
        rng = range(int(a), int(b))
    except ValueError:
        _fail(f"--seeds {seeds!r} must be A:B with integers A < B")
    except ConfigError as e:
        _fail(str(e))
    with Progress(TextColumn("[bold]batch[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} episodes"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("", total=len(rng))
        res = run_batch(agent, family, rng, events, workers, on_done=lambda r: bar.advance(task))
    ok = sum(r["success"] for r in res)
    coll = sum(r["collisions"] > 0 for r in res)
    _console.print(f"{agent} on {family}{' +events' if events else ''}, seeds {seeds}: success {ok}/{len(res)}, "
                    f"episodes with a collision {coll}, red-light runs {sum(any(i['type'] == 'red_light' for i in r['infractions']) for r in res)}")
    for r in res:
        if not r["success"]:
            extra = f" pos_err={r.get('parking_position_error_m')}" if "parked" in r else ""
            _console.print(f"  seed {r['seed']}: {failure_reason(r)} (RC {r['route_completion']:.0f}%, t={r['duration_s']}s{extra})")
    if out:
        out.write_text(json.dumps(res, indent=1, default=str))


@app.command("eval")
def eval_cmd(agent: str = typer.Option("expert", help="agent name or module:Class"),
             suite: Optional[str] = typer.Option(None, help="suite name (highway, urban, parking, p2p, longtail, all) or a suite .yaml"),
             env: Optional[str] = typer.Option(None, "--env", help="a stock highway-env gym id instead of a suite"),
             seeds: str = typer.Option("0:10", help="A:B, as Python's range (B excluded)"),
             workers: int = typer.Option(1, min=1, help="episodes run in parallel on Ray"),
             out: Path = typer.Option(Path("runs/results.json"), help="results file (its journal sits beside it)"),
             record: bool = typer.Option(False, "--record", help="save each episode's log (.npz) and video"),
             episode_timeout: float = typer.Option(1800.0, help="seconds before an episode counts as hung"),
             address: Optional[str] = typer.Option(None, help="an existing Ray cluster's address (default: local)"),
             checkpoint: Optional[Path] = typer.Option(None, help="E2E model checkpoint (.safetensors) for --agent e2e "
                                                       "(default: $DUALDRIVE_E2E_CHECKPOINT, else the shipped one)"),
             split: str = typer.Option("test", help="--suite ngsim-replay: the NGSIM split (train, val, test)"),
             scenarios: Optional[Path] = typer.Option(None, help="--suite ngsim-replay: a folder of CommonRoad XML "
                                                      "scenarios instead of the NGSIM split"),
             stride_s: float = typer.Option(2.0, help="--suite ngsim-replay: a clip per car every this many s"),
             max_clips: Optional[int] = typer.Option(None, min=1, help="--suite ngsim-replay: at most this many "
                                                     "clips (spread evenly)"),
             reactive: bool = typer.Option(False, "--reactive", help="--suite ngsim-replay: recorded cars the ego "
                                           "gets in the way of are handed to IDM along their own paths"),
             vlm: Optional[str] = typer.Option(None, help="System 2 of --agent dual: builtin, builtin:CHECKPOINT, "
                                               "hf:MODEL_DIR or openai:BASE_URL, optionally after process: (default: $DUALDRIVE_VLM_BACKEND, else builtin)"),
             s2_latency: Optional[float] = typer.Option(None, help=S2_LATENCY_HELP),
             s2_min_confidence: Optional[float] = typer.Option(None, help=S2_CONFIDENCE_HELP),
             guard: Optional[bool] = typer.Option(None, "--guard/--no-guard", help=GUARD_HELP),
             probe: Optional[bool] = typer.Option(None, "--probe/--no-probe", help=PROBE_HELP),
             lights: Optional[bool] = typer.Option(None, "--lights/--no-lights", help=LIGHTS_HELP),
             park_assist: Optional[bool] = typer.Option(None, "--park-assist/--no-park-assist",
                                                        help=PARK_ASSIST_HELP),
             yielding: Optional[bool] = typer.Option(None, "--yield/--no-yield", help=YIELD_HELP),
             turn_keeping: Optional[bool] = typer.Option(None, "--turn-keeping/--no-turn-keeping",
                                                         help=TURN_KEEPING_HELP),
             lane_change: Optional[bool] = typer.Option(None, "--lane-change/--no-lane-change",
                                                        help=LANE_CHANGE_HELP)) -> None:
    """Evaluate an agent closed loop; resumable (re-run the same command after a crash or Ctrl-C).
    ``--suite ngsim-replay``: take over recorded human cars (NGSIM log replay), scored beside the human."""
    from dualdrive.bench.evaluate import EvalConfig, EvalInterrupted, evaluate, journal_path, parse_seeds, plan_jobs
    ckpt = _use_checkpoint(checkpoint)
    vlm_spec = _use_vlm(vlm)
    s2_latency = _use_s2_latency(s2_latency)
    s2_conf = _use_s2_confidence(s2_min_confidence)
    guard_on = _use_guard(guard)
    probe_on = _use_probe(probe)
    _use_rules(lights, park_assist, yielding, turn_keeping, lane_change)
    if suite == "ngsim-replay":
        _replay_eval(agent, split, scenarios, stride_s, max_clips, out, reactive)
        return
    try:
        if suite is None and env is None:
            suite = "all"
        cfg = EvalConfig(agent, parse_seeds(seeds), out, suite, env, workers, record, episode_timeout, address,
                         {**({"checkpoint": str(ckpt)} if ckpt else {}), **({"vlm": vlm_spec} if vlm_spec else {}),
                          **({"s2_sim_latency_s": s2_latency} if s2_latency is not None else {}),
                          **({"s2_min_confidence": s2_conf} if s2_conf is not None else {}),
                          **(_e2e_meta(guard_on, probe_on) if agent in ("e2e", "dual") else {})})
        from dualdrive.agents.registry import load_agent
        load_agent(agent)  # a bad agent name fails here, not in every worker
        jobs, _ = plan_jobs(cfg)
        with Progress(TextColumn("[bold]eval[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} episodes"),
                      TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("", total=len(jobs))

            def done(row: dict, finished: int, total: int) -> None:
                bar.update(task, completed=finished, description=f"last: {row['scenario']}/{row['seed']} DS {row['driving_score']:.0f}")
            res = evaluate(cfg, on_done=done)
    except ConfigError as e:
        _fail(str(e))
    except EvalInterrupted as e:
        err.print(str(e))
        raise typer.Exit(130)
    s = res["summary"]
    _console.print(f"{agent} on {res['meta']['suite'] or env}, seeds {seeds}: {s['episodes']} episodes "
                   f"({s['failed_episodes']} failed), {res['meta']['wall_time_s']:.0f} s")
    for name, m in [("driving score", "driving_score"), ("route completion", "route_completion"),
                    ("infraction score", "infraction_score"), ("success rate", "success_rate"), ("PDMS", "pdms"),
                    ("instruction honoured", "instruction_honoured")]:
        if m in s:
            lo, hi = s[m]["ci95"]
            _console.print(f"  {name:<17} {s[m]['mean']:6.1f}  [{lo:.1f}, {hi:.1f}]")
    _console.print(f"-> {out} (journal {journal_path(out)})")


def _replay_eval(agent: str, split: str, scenarios: Optional[Path], stride_s: float, max_clips: Optional[int],
                 out: Path, reactive: bool = False) -> None:
    import json

    import numpy as np

    from dualdrive.agents.registry import load_agent
    from dualdrive.human.closedloop import CLOSED_LOOP_S, evaluate_replay
    from dualdrive.human.openloop import load_clips
    from dualdrive.human.pack import HumanDataError, folder_files, split_files
    from dualdrive.sensors.suite import SensorSuite
    try:
        drivers = [None] if agent == "human" else [load_agent(agent), None]  # the human is always the reference
        if drivers[0] is not None and drivers[0].privileged:
            raise ConfigError(f"agent {agent!r} drives from the dualdrive world's ground truth, which a replayed "
                              "human scene does not have; score a sensor or route agent (e2e, modular, constant_velocity)")
        files = folder_files(scenarios) if scenarios is not None else split_files(split)
        clips = load_clips(files, 1.0, CLOSED_LOOP_S, stride_s, max_clips)
        res: dict = {"meta": {"suite": "ngsim-replay", "source": str(scenarios) if scenarios else f"ngsim:{split}",
                              "agent": agent, "clips": len(clips), "closed_loop_s": CLOSED_LOOP_S,
                              "reactive": reactive}, "drivers": {}}
        for d in drivers:
            name = "human" if d is None else agent
            with Progress(TextColumn(f"[bold]replay {name}[/bold]"), BarColumn(),
                          TextColumn("{task.completed}/{task.total} clips"), TimeElapsedColumn(), console=err,
                          transient=True) as bar:
                task = bar.add_task("", total=len(clips))
                res["drivers"][name] = evaluate_replay(clips, d, SensorSuite if d is not None and d.uses_sensors
                                                       else None, progress=lambda n: bar.update(task, completed=n),
                                                       reactive=reactive)
    except (ConfigError, HumanDataError) as e:
        _fail(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=lambda o: None if isinstance(o, float) and np.isnan(o) else o))
    _console.print(f"closed-loop replay on {res['meta']['source']}: {len(clips)} clips, {CLOSED_LOOP_S:g} s driven "
                   f"each, other cars {'reactive (IDM once the ego is in their way)' if reactive else 'non-reactive'}")
    _console.print(f"  {'driver':<18} {'PDMS':>6} {'NC':>6} {'DAC':>6} {'TTC':>6} {'EP':>6} {'C':>6} {'coll.':>6}"
                   f" {'offroad':>7}")
    for name, r in res["drivers"].items():
        s = r["summary"]
        _console.print(f"  {name:<18} {s['pdms']:6.1f} {s['nc']:6.1f} {s['dac']:6.1f} {s['ttc']:6.1f} {s['ep']:6.1f} "
                       f"{s['comfort']:6.1f} {100 * s['collision_rate']:5.1f}% {100 * s['off_road_rate']:6.1f}%")
    _console.print(f"-> {out}")


@app.command()
def report(results: list[Path] = typer.Argument(..., help="one or more results.json files"),
           out: Path = typer.Option(Path("runs/report.html"), help="HTML file to write")) -> None:
    """One self-contained HTML page: summary, per-scenario table, infractions, distributions, videos."""
    from dualdrive.bench.report import html_report
    try:
        page = html_report(results)
    except ConfigError as e:
        _fail(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    _console.print(f"report -> {out}")


@app.command()
def compare(a: Path = typer.Argument(..., help="baseline results.json"),
            b: Path = typer.Argument(..., help="results.json to compare against it")) -> None:
    """Differences B - A per metric with 95% bootstrap intervals, and whether each is significant."""
    from dualdrive.bench.report import compare_text
    try:
        _console.print(compare_text(a, b))
    except ConfigError as e:
        _fail(str(e))


@app.command("compare-openloop")
def compare_openloop_cmd(a: Path = typer.Argument(..., help="baseline eval-openloop results.json"),
                         b: Path = typer.Argument(..., help="eval-openloop results.json to compare against it"),
                         method: str = typer.Option("e2e", help="the planner whose error is compared")) -> None:
    """B - A of a planner's open-loop L2 at 3 s on the clips both runs scored, paired, with a 95% bootstrap
    interval over recorded vehicles (overlapping scenario files repeat clips)."""
    import json

    from dualdrive.human.compare import compare_openloop
    from dualdrive.human.pack import HumanDataError
    try:
        runs = [json.loads(Path(p).read_text()) for p in (a, b)]
        r = compare_openloop(runs[0], runs[1], method)
    except (OSError, json.JSONDecodeError) as e:
        _fail(f"cannot read an eval-openloop results file: {e}")
    except HumanDataError as e:
        _fail(str(e))
    lo, hi = r["ci95"]
    _console.print(f"{method} L2 at 3 s: A {r['a']:.3f} m, B {r['b']:.3f} m, B - A {r['diff']:+.3f} m "
                   f"[{lo:+.3f}, {hi:+.3f}] over {r['clips']} clips of {r['vehicles']} vehicles"
                   f"{' (significant)' if r['significant'] else ' (not significant)'}"
                   + (f"; {r['only_in_one']} clip(s) in only one run left out" if r["only_in_one"] else ""))


@app.command()
def score(logs: list[Path] = typer.Argument(..., help="episode logs (.npz) saved by `dualdrive eval --record`")) -> None:
    """Recompute every metric of saved episode logs (with this version's metric code) and print them."""
    import json

    from dualdrive.bench.log import EpisodeLog, LogError
    from dualdrive.bench.metrics import episode_metrics
    for p in logs:
        try:
            log = EpisodeLog.load(p)
        except LogError as e:
            _fail(str(e))
        m = episode_metrics(log)
        _console.print(json.dumps({"log": str(p), "scenario": log.meta.get("scenario"), "seed": log.meta["seed"],
                                   **{k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()}}))


@app.command()
def sensors(scenario: str = typer.Option("urban", help="highway, urban, parking, p2p or a dualdrive gym id"),
            env: Optional[str] = typer.Option(None, "--env", help="a stock highway-env gym id instead of a scenario"),
            seed: int = typer.Option(0, help="episode seed"),
            steps: int = typer.Option(20, min=0, help="ticks to drive (the expert; idle on stock envs) before the picture"),
            out: Path = typer.Option(Path("runs/sensors.png"), help="PNG to write")) -> None:
    """One picture: camera image(s), LiDAR point cloud (BEV), radar returns and the top-down ground truth."""
    import gymnasium as gym
    import numpy as np

    from dualdrive.sensors.lidar import SensorConfigError
    from dualdrive.sensors.panel import sensor_panel
    from dualdrive.sensors.suite import SensorSuite
    try:
        if env is not None:
            import highway_env  # noqa: F401
            if env not in gym.registry:
                _fail(f"unknown env id {env!r}; e.g. highway-v0, intersection-v0, parking-v0, roundabout-v0")
            wrapped = SensorSuite(gym.make(env, render_mode="rgb_array"))
            obs, info = wrapped.reset(seed=seed)
            for _ in range(steps):
                a = 1 if isinstance(wrapped.action_space, gym.spaces.Discrete) else np.zeros(wrapped.action_space.shape)
                obs, _, te, tr, _ = wrapped.step(a)
                if te or tr:
                    break
            label = f"{env} seed {seed}"
        else:
            from dualdrive.agents.expert.agent import ExpertAgent
            from dualdrive.agents.follower import TrajectoryFollower
            from dualdrive.run.drive import resolve_scenario
            family, env_id = resolve_scenario(scenario)
            wrapped = SensorSuite(gym.make(env_id, disable_env_checker=True))
            obs, info = wrapped.reset(seed=seed)
            agent, follower = ExpertAgent(), TrajectoryFollower()
            agent.reset(info)
            world = wrapped.unwrapped.world
            for _ in range(steps):
                d = agent.act(obs)
                obs, _, te, tr, _ = wrapped.step(follower.update(d, world.ego_speed).to_action())
                if te or tr:
                    break
            label = f"{family} seed {seed}, t={world.t:.1f} s"
        path = sensor_panel(wrapped, obs, out, label)
    except (ConfigError, SensorConfigError) as e:
        _fail(str(e))
    _console.print(f"sensors -> {path}")


@app.command()
def bench(out: Path = typer.Option(Path("runs/bench.json"), help="JSON file with the raw figures (a PNG plot beside it)"),
          frames: int = typer.Option(100, min=5, help="frames per sensor measurement (median reported)"),
          steps: int = typer.Option(300, min=20, help="world ticks per simulator measurement"),
          skip_eval: bool = typer.Option(False, "--skip-eval", help="leave out the evaluation-throughput run (~1 min)"),
          profile: bool = typer.Option(False, "--profile", help="also write a cProfile of the world tick beside the JSON")) -> None:
    """Speed, side by side on this machine: the world against stock highway-env, scaling with traffic,
    sensor costs, the closed loop, evaluation throughput."""
    import json

    from dualdrive.perf.report import run_bench
    with Progress(TextColumn("[bold]bench[/bold] {task.description}"), BarColumn(), TimeElapsedColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task("", total=None)
        res = run_bench(frames, steps, not skip_eval, lambda name: bar.update(task, description=name))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    from dualdrive.perf.report import plot_bench
    png = plot_bench(res, out.with_suffix(".png"))
    r, sn, sc = res["ratios"], res["sensors"], res["scaling"]
    _console.print(f"world vs highway-env (4-lane motorway, 50 vehicles, 10 Hz): {res['sim']['dualdrive_steps_per_s']:.0f} vs "
                   f"{res['sim']['highway_env_steps_per_s']:.0f} steps/s = {r['sim_vs_highway_env']:.1f}x")
    _console.print(f"tick cost at {sc['vehicles']} vehicles: {', '.join(f'{x:.2f}' for x in sc['ms_per_tick'])} ms "
                   f"(exponent {sc['exponent']:.2f})")
    _console.print(f"sensors, {sn['actors_in_scene']} vehicles in the scene (median of {frames} frames): camera 96x192 "
                   f"{sn['camera_96x192_ms']:.2f} ms, LiDAR 32 beams {sn['lidar_32_beams_ms']:.2f} ms, radar {sn['radar_ms']:.2f} ms")
    _console.print(f"closed loop (urban, all sensors, one core): {res['closed_loop']['steps_per_s']:.0f} steps/s with the "
                   f"idle agent, {res['closed_loop_e2e']['steps_per_s']:.0f} with System 1 (e2e) driving")
    e = res["e2e"]
    _console.print(f"e2e decision (observation -> plan, 1 thread): {e['ms_mean']:.1f} ms mean, {e['ms_p95']:.1f} ms p95 "
                   f"(network {e['model_ms_mean']:.1f} ms; slow on the road {e['ms_mean_slow_no_probe']:.1f} ms, with the speed "
                   f"probe asked {e['ms_mean_probing']:.1f} ms: {e['ms_mean_probing'] / e['ms_mean_slow_no_probe']:.2f}x); "
                   f"{e['params']:,} parameters, checkpoint {e['checkpoint_mb']:.1f} MB"
                   + ("" if e["checkpoint"] else " (no shipped checkpoint: default config)"))
    d = res["dual"]
    _console.print(f"dual: System 2 (builtin VLM, 1 thread) {d['s2_ms_mean']:.0f} ms per answer ({d['s2_ms_p95']:.0f} ms p95, "
                   f"{d['s2_cpu_ms_mean']:.0f} ms CPU); System 1 {d['s1_ms_mean_alone']:.1f} ms alone, "
                   f"{d['s1_ms_mean_with_s2']:.1f} ms with System 2 answering beside it ({d['s1_with_s2_vs_alone']:.2f}x), "
                   f"{d['s1_ms_mean_with_s2_process']:.1f} ms with System 2 in its own process "
                   f"({d['s1_with_s2_process_vs_alone']:.2f}x); at 10 Hz with System 2 at 1 Hz: tick {d['tick_ms_mean_s1']:.1f} ms "
                   f"(System 1 alone), {d['tick_ms_mean_dual_thread']:.1f} (dual, thread), {d['tick_ms_mean_dual_process']:.1f} (dual, process)")
    if "eval" in res:
        _console.print("eval: " + ", ".join(f"{k.replace('_', ' ')} {v['episodes_per_min']:.1f} episodes/min"
                                            for k, v in res["eval"].items()))
    if profile:
        from dualdrive.perf.sim import profile_tick
        prof_path = out.with_name(out.stem + "_profile.txt")
        prof_path.write_text(profile_tick())
        _console.print(f"profile of 300 world ticks (4-lane motorway, 50 vehicles) -> {prof_path}")
    _console.print(f"-> {out}, {png}")


@app.command("eval-perception")
def eval_perception(suite: str = typer.Option("urban", help="suite name or .yaml file"),
                    seeds: str = typer.Option("0:3", help="A:B, as Python's range (B excluded)"),
                    frames: int = typer.Option(300, min=10, help="ticks per episode (every 2nd is scored)"),
                    out: Optional[Path] = typer.Option(None, help="write the figures to this JSON file")) -> None:
    """The modular baseline's perception against ground truth: detection AP, MOTA/IDF1, light accuracy, and
    free-spot precision and recall where the route parks."""
    import json

    from dualdrive.bench.evaluate import parse_seeds
    from dualdrive.bench.suites import load_suite
    try:
        rng = parse_seeds(seeds)
        s = load_suite(suite)
    except ConfigError as e:
        _fail(str(e))
    from dualdrive.agents.modular.perception_eval import evaluate_perception
    with Progress(TextColumn("[bold]eval-perception[/bold]"), BarColumn(), TimeElapsedColumn(), console=err,
                  transient=True) as bar:
        bar.add_task("", total=None)
        res = evaluate_perception([(sc.name, sc.config) for sc in s.scenarios], rng, frames)
    res = {"suite": s.name, "seeds": seeds, **res}
    if out:
        out.write_text(json.dumps(res, indent=1))
    light = "-" if res["light_accuracy"] is None else f"{100 * res['light_accuracy']:.1f}%"
    _console.print(f"perception on {s.name}, seeds {seeds}: {res['ground_truth_objects']} visible objects in "
                   f"{res['frames_scored']} frames; mAP {res['map']:.3f} (AP at 0.5/1/2/4 m: "
                   + "/".join(f"{res[f'ap_{t}m']:.2f}" for t in (0.5, 1.0, 2.0, 4.0))
                   + f"), MOTA {res['mota']:.3f}, IDF1 {res['idf1']:.3f}, {res['id_switches']} id switches, "
                   f"traffic lights {light} of {res['light_frames']} frames")
    if res["lane_frames"]:
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        num = lambda v: "-" if v is None else f"{v:.2f} m"  # noqa: E731
        _console.print(f"lanes: {res['lane_frames']} frames on a painted lane; ego's lane found {pct(res['lane_found'])}, "
                       f"offset error {num(res['lane_offset_error_m'])} (p95 {num(res['lane_offset_error_p95_m'])}), "
                       f"width error {num(res['lane_width_error_m'])}, lane counts right {pct(res['lane_count_accuracy'])}; "
                       f"left lane precision {pct(res['lane_left_precision'])} recall {pct(res['lane_left_recall'])}, "
                       f"right lane precision {pct(res['lane_right_precision'])} recall {pct(res['lane_right_recall'])}")
    if res["spots_offered"] or res["spots_free_passed"]:
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        _console.print(f"free spots: {res['spots_offered']} bays offered, precision {pct(res['spot_precision'])}, "
                       f"recall {pct(res['spot_recall'])} of {res['spots_free_passed']} free spots passed, centre error "
                       + ("-" if res["spot_centre_error_m"] is None else f"{res['spot_centre_error_m']:.2f} m"))


@app.command()
def collect(agent: str = typer.Option("expert", help="the driver: agent name or module:Class (the expert labels)"),
            suite: str = typer.Option("all", help="suite name (highway, urban, parking, p2p, longtail, all) or a .yaml"),
            episodes: Optional[int] = typer.Option(None, help="episodes in all, spread over the suite's scenarios "
                                                   "(default: as many as --seeds, or 10)"),
            seeds: Optional[str] = typer.Option(None, help="A:B development seeds, one per episode (default 0:N)"),
            workers: int = typer.Option(1, help="episodes run in parallel on Ray"),
            out: Path = typer.Option(Path("runs/demos"), help="dataset directory (episodes.zarr, dataset.json, card)"),
            dart_noise: float = typer.Option(0.0, help="DART noise sigma in m/s^2 on the executed control (0: none)"),
            frame_stride: int = typer.Option(2, help="record every K-th 10 Hz tick (2: 5 Hz)"),
            sampling: str = typer.Option("uniform", help="uniform, or informative: waiting frames 5x rarer, frames "
                                         "that start a standing car or reverse at 5 Hz"),
            max_duration_s: Optional[float] = typer.Option(None, help="time limit per episode in s (default 120; "
                                                          "a scenario's own shorter limit stays)"),
            episode_timeout: float = typer.Option(1800.0, help="wall seconds before an episode counts as hung"),
            address: Optional[str] = typer.Option(None, help="an existing Ray cluster's address (default: local)")) -> None:
    """Collect demonstrations (sensors + expert labels) into DIR/episodes.zarr; resumable."""
    from rich.progress import TimeRemainingColumn

    from dualdrive.bench.evaluate import parse_seeds
    from dualdrive.data.collect import DEFAULT_MAX_DURATION_S, CollectConfig, CollectInterrupted, collect, plan_jobs
    from dualdrive.data.format import DatasetError
    try:
        if workers < 1:
            raise ConfigError(f"--workers {workers} must be at least 1")
        cfg = CollectConfig(out, suite, agent, episodes, parse_seeds(seeds) if seeds else None, workers, dart_noise,
                            frame_stride, max_duration_s if max_duration_s is not None else DEFAULT_MAX_DURATION_S,
                            sampling, episode_timeout, address)
        from dualdrive.agents.registry import load_agent
        load_agent(agent)  # a bad agent name fails here, not in every worker
        jobs, _ = plan_jobs(cfg)
        with Progress(TextColumn("[bold]collect[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} episodes"),
                      TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("", total=len(jobs))

            def done(row: dict, finished: int, total: int) -> None:
                bar.update(task, completed=finished, description=f"last: {row['key']} {row['frames']} frames "
                                                                 f"{'ok' if row['status'] == 'ok' else 'FAILED'}")
            res = collect(cfg, on_done=done)
    except (ConfigError, DatasetError) as e:
        _fail(str(e))
    except CollectInterrupted as e:
        err.print(str(e))
        raise typer.Exit(130)
    run, card = res["run"], res["card"]
    _console.print(f"{agent} on {suite}: {run['collected']} episodes collected, {run['skipped_complete']} already there, "
                   f"{len(run['failed'])} failed; {run['frames']} frames in {run['wall_s']:.0f} s")
    for f in run["failed"]:
        _console.print(f"  failed {f['key']}: {f['error']}")
    _print_card(card, out)


@app.command("human-figure")
def human_figure(agent: str = typer.Option("e2e", help="agent name or module:Class (it must plan)"),
                 clip: int = typer.Option(0, min=0, help="index of the clip in the split's clip list"),
                 split: str = typer.Option("test", help="the NGSIM split"),
                 scenarios: Optional[Path] = typer.Option(None, help="a folder of CommonRoad XML scenarios instead"),
                 checkpoint: Optional[Path] = typer.Option(None, help="E2E checkpoint (default: the shipped one)"),
                 out: Path = typer.Option(Path("runs/ngsim/clip.png"), help="PNG to write")) -> None:
    """Draw a replayed human clip: the agent's plan beside the human's path (and constant velocity)."""
    from dualdrive.agents.registry import load_agent
    from dualdrive.human.figure import draw_clip
    from dualdrive.human.openloop import load_clips
    from dualdrive.human.pack import HumanDataError, folder_files, split_files
    from dualdrive.human.replay import FUTURE_S, HISTORY_S
    from dualdrive.agents.e2e.agent import network_alone
    from dualdrive.sensors.suite import SensorSuite
    _use_checkpoint(checkpoint)
    try:
        with network_alone():  # the network's plan, as eval-openloop scores it
            a = load_agent(agent)
        files = folder_files(scenarios) if scenarios is not None else split_files(split)
        clips = load_clips(files, HISTORY_S, FUTURE_S, 1.0)
        if clip >= len(clips):
            raise HumanDataError(f"--clip {clip}: there are {len(clips)} clips (0 to {len(clips) - 1})")
        path = draw_clip(clips[clip], a, out, SensorSuite if a.uses_sensors else None)
    except (ConfigError, HumanDataError) as e:
        _fail(str(e))
    _console.print(f"{clips[clip].name} -> {path}")


@app.command("export-human")
def export_human_cmd(out: Path = typer.Option(..., help="dataset directory to write (resumable: re-run to finish)"),
                     data: str = typer.Option("ngsim", help="'ngsim': the shipped human-driving pack (with --split)"),
                     split: str = typer.Option("train", help="train, val or test (never train on val or test)"),
                     scenarios: Optional[Path] = typer.Option(None, help="a folder of CommonRoad XML scenarios instead"),
                     frame_stride: int = typer.Option(5, min=1, help="log steps between recorded frames"),
                     max_scenarios: Optional[int] = typer.Option(None, min=1, help="export only this many scenario "
                                                                 "files, spread evenly over the sorted list")) -> None:
    """Recorded human driving as System 1 training data (every car replayed through the sensors, labelled
    with its own next 4 s), in the format `dualdrive train --data` reads beside expert demonstrations."""
    import numpy as np

    from dualdrive.data.card import write_card
    from dualdrive.data.format import DatasetError
    from dualdrive.human.export import HumanExportConfig, export_human
    from dualdrive.human.pack import HumanDataError, folder_files, split_files
    if scenarios is None and data != "ngsim":
        _fail(f"--data {data!r}: only 'ngsim' (the shipped pack); give other CommonRoad files with --scenarios DIR")
    try:
        files = sorted(folder_files(scenarios) if scenarios is not None else split_files(split))
        if max_scenarios is not None and max_scenarios < len(files):  # every location, not the first one only
            files = [files[int(k)] for k in np.unique(np.linspace(0, len(files) - 1, max_scenarios).round())]
        source = str(scenarios) if scenarios is not None else f"ngsim:{split}"
        with Progress(TextColumn("[bold]export[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} scenarios"),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("", total=len(files))
            res = export_human(files, out, HumanExportConfig(frame_stride, source),
                               progress=lambda n, total: bar.update(task, completed=n))
        card = write_card(out)
    except (HumanDataError, DatasetError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        err.print("interrupted: the finished episodes are kept; run the same command to go on")
        raise typer.Exit(130)
    _console.print(f"{res['episodes_written']} episodes ({res['frames_written']} frames) written, "
                   f"{res['episodes_already_there']} already there -> {out}")
    _print_card(card, out)


@app.command("dataset-card")
def dataset_card_cmd(root: Path = typer.Argument(..., help="dataset directory written by `dualdrive collect`")) -> None:
    """Rebuild DIR/card.md and DIR/card.json from the episodes in the store."""
    from dualdrive.data.card import write_card
    from dualdrive.data.format import DatasetError
    try:
        card = write_card(root)
    except DatasetError as e:
        _fail(str(e))
    _print_card(card, root)


def _use_s2_latency(seconds: Optional[float]) -> Optional[float]:
    """Check ``--s2-latency`` and hand it to the dual agent (and the Ray workers) through its env var."""
    if seconds is None:
        return None
    import os

    from dualdrive.agents.dual.agent import MAX_SIM_LATENCY_S, S2_LATENCY_ENV
    if not 0.0 <= seconds <= MAX_SIM_LATENCY_S:
        _fail(f"--s2-latency {seconds:g}: give 0 to {MAX_SIM_LATENCY_S:g} s of simulation time")
    os.environ[S2_LATENCY_ENV] = repr(float(seconds))
    return float(seconds)


def _use_s2_confidence(threshold: Optional[float]) -> Optional[float]:
    """Check ``--s2-min-confidence`` and hand it to the dual agent (and the Ray workers) through its env var."""
    if threshold is None:
        return None
    import os

    from dualdrive.agents.dual.agent import S2_CONFIDENCE_ENV
    if not 0.0 <= threshold <= 1.0:
        _fail(f"--s2-min-confidence {threshold:g}: give a probability from 0 to 1")
    os.environ[S2_CONFIDENCE_ENV] = repr(float(threshold))
    return float(threshold)


def _use_vlm(spec: Optional[str]) -> Optional[str]:
    """Check ``--vlm`` and hand it to the dual agent (and the Ray workers) through its env var."""
    if spec is None:
        return None
    import os

    from dualdrive.vlm.backend import BACKEND_ENV, BACKEND_SPECS, BackendSpecError, parse_backend_spec
    try:
        _, kind, arg = parse_backend_spec(spec)
    except BackendSpecError:
        _fail(f"--vlm {spec!r}: valid forms are {BACKEND_SPECS}")
    path = Path(arg).expanduser() if kind in ("hf", "builtin") and arg else None
    if path is not None and not path.exists():
        _fail(f"--vlm {spec!r}: {path} does not exist")
    if kind == "hf" and not (path / "config.json").is_file():
        _fail(f"--vlm {spec!r}: {path} is not a Hugging Face model directory (no config.json)")
    os.environ[BACKEND_ENV] = spec  # read by DualAgent(); inherited by the Ray workers started later
    return spec


def _e2e_meta(guard_on: bool, probe_on: bool) -> dict:
    """System 1's closed-loop aids as the results record them (and a run of other settings never resumes)."""
    from dualdrive.agents.e2e.agent import (guard_radar_from_env, lane_change_from_env, leaving_from_env,
                                            lights_from_env, park_assist_from_env, turn_keeping_from_env,
                                            yield_from_env)
    try:
        radar = guard_on and guard_radar_from_env()
        leaving, lights, assist = leaving_from_env(), lights_from_env(), park_assist_from_env()
        yielding, keeping, changing = yield_from_env(), turn_keeping_from_env(), lane_change_from_env()
    except ValueError as e:
        _fail(str(e))
    return {"e2e_guard": ("on" if radar else "lidar") if guard_on else "off", "e2e_probe": "on" if probe_on else "off",
            "e2e_leaving": "on" if leaving else "off", "e2e_lights": "on" if lights else "off",
            "e2e_park_assist": "on" if assist else "off", "e2e_yield": "on" if yielding else "off",
            "e2e_turn_keeping": "on" if keeping else "off", "e2e_lane_change": "on" if changing else "off"}


def _use_probe(probe: Optional[bool]) -> bool:
    """Hand ``--probe/--no-probe`` to the e2e agent (and the Ray workers) through its env var; the setting in force."""
    from dualdrive.agents.e2e.agent import PROBE_ENV, probe_from_env
    return _use_switch(probe, PROBE_ENV, probe_from_env)


def _use_rules(lights: Optional[bool], park_assist: Optional[bool], yielding: Optional[bool] = None,
               turn_keeping: Optional[bool] = None, lane_change: Optional[bool] = None) -> None:
    """Hand ``--lights``, ``--park-assist``, ``--yield``, ``--turn-keeping`` and ``--lane-change`` (or their ``--no-``
    forms) to the e2e
    agent (and the Ray workers) through their env vars (a bad value of any of those env vars is a clear error here)."""
    from dualdrive.agents.e2e.agent import (LANE_CHANGE_ENV, LIGHTS_ENV, PARK_ASSIST_ENV, TURN_KEEPING_ENV, YIELD_ENV,
                                            lane_change_from_env, lights_from_env, park_assist_from_env,
                                            turn_keeping_from_env, yield_from_env)
    _use_switch(lights, LIGHTS_ENV, lights_from_env)
    _use_switch(park_assist, PARK_ASSIST_ENV, park_assist_from_env)
    _use_switch(yielding, YIELD_ENV, yield_from_env)
    _use_switch(turn_keeping, TURN_KEEPING_ENV, turn_keeping_from_env)
    _use_switch(lane_change, LANE_CHANGE_ENV, lane_change_from_env)


def _use_guard(guard: Optional[bool]) -> bool:
    """Hand ``--guard/--no-guard`` to the e2e agent (and the Ray workers) through its env var; the setting in force."""
    from dualdrive.agents.e2e.agent import GUARD_ENV, guard_from_env
    return _use_switch(guard, GUARD_ENV, guard_from_env)


def _use_switch(value: Optional[bool], env_name: str, read: Callable[[], bool]) -> bool:
    import os
    if value is not None:
        os.environ[env_name] = "1" if value else "0"
    try:
        return read()
    except ValueError as e:  # a bad value of the env var itself: say which and how to fix it
        _fail(str(e))


def _use_checkpoint(checkpoint: Optional[Path]) -> Optional[Path]:
    """Check ``--checkpoint`` and hand it to the e2e agent (and the Ray workers) through its env var."""
    if checkpoint is None:
        return None
    import os

    from dualdrive.agents.e2e.agent import CHECKPOINT_ENV, check_checkpoint
    from dualdrive.agents.e2e.checkpoint import CheckpointError
    try:
        path = check_checkpoint(checkpoint)
    except CheckpointError as e:
        _fail(f"--checkpoint: {e}")
    os.environ[CHECKPOINT_ENV] = str(path)  # read by E2EAgent(); inherited by the Ray workers started later
    return path


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
             add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train the E2E model: --data DIR [DIR ...] --out RUN [--epochs N --batch-size B --device cpu|cuda|auto ...];
    the flags of `python -m dualdrive.training` (see --help); re-running resumes."""
    from dualdrive.training.__main__ import main as train_main
    code = train_main(list(ctx.args), prog="dualdrive train")
    if code:
        raise typer.Exit(code)


@app.command()
def dagger(data: list[Path] = typer.Option(..., help="the demonstrations the starting model was trained on (repeatable)"),
           run: Path = typer.Option(..., help="training run directory; round 1 starts from RUN/best.safetensors"),
           rounds: int = typer.Option(1, help="DAgger rounds"),
           episodes: int = typer.Option(8, help="learner episodes per round"),
           suite: str = typer.Option("driving", help="suite of the learner episodes and of the closed-loop check"),
           epochs: int = typer.Option(1, help="fine-tuning epochs per round"),
           seed_start: int = typer.Option(1000, help="first development seed of round 1's episodes"),
           val_seeds: str = typer.Option("4900:4902", help="closed-loop validation seeds A:B"),
           val_data: Optional[Path] = typer.Option(None, help="held-out dataset for the validation L2"),
           frame_stride: int = typer.Option(10, help="record every K-th tick"),
           max_duration_s: float = typer.Option(120.0, help="time limit per collected episode"),
           batch_size: int = typer.Option(32), lr: float = typer.Option(3e-4), device: str = typer.Option("auto"),
           workers: int = typer.Option(1, min=1, help="episodes in parallel on Ray")) -> None:
    """DAgger: the learner drives, the expert labels, aggregate, fine-tune, score; writes RUN/dagger.json (resumable)."""
    from dualdrive.data.format import DatasetError
    from dualdrive.training.config import TrainConfig, TrainConfigError
    from dualdrive.training.dagger import DaggerConfig, run_dagger
    from dualdrive.training.loop import TrainingError
    try:
        tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device, warmup_steps=0)
        res = run_dagger(DaggerConfig(tuple(data), run, rounds, episodes, suite, epochs, seed_start, val_seeds,
                                      val_data, 0.1, frame_stride, max_duration_s, workers, tcfg),
                         log=lambda m: err.print(m))
    except (ConfigError, DatasetError, TrainConfigError, TrainingError) as e:
        _fail(str(e))
    for r in res["rounds"]:
        c = r["closed_loop"]
        l2 = "-" if r["val_l2_m"] is None else f"{r['val_l2_m']:.3f} m"
        _console.print(f"round {r['round']}: {r['dataset_frames']} frames, val L2 {l2}, DS {c['driving_score']:.1f}, "
                       f"success {c['success_rate']:.0f}% ({c['suite']} seeds {c['seeds']})")
    _console.print(f"-> {run / 'dagger.json'}")


@app.command("eval-openloop")
def eval_openloop(agent: str = typer.Option("e2e", help="agent name or module:Class; it must answer with a plan"),
                  data: Optional[list[str]] = typer.Option(None, help="'ngsim' (the shipped human-driving pack, with "
                                                           "--split), or held-out dataset directories of `dualdrive "
                                                           "collect` (repeatable; e2e only)"),
                  split: str = typer.Option("test", help="with --data ngsim: train, val or test"),
                  scenarios: Optional[Path] = typer.Option(None, help="a folder of CommonRoad XML scenarios (searched "
                                                           "recursively) instead of --data"),
                  stride_s: float = typer.Option(1.0, help="human clips: one planning time per car every this many s"),
                  max_clips: Optional[int] = typer.Option(None, min=1, help="human clips: score at most this many "
                                                          "(spread evenly)"),
                  checkpoint: Optional[Path] = typer.Option(None, help="E2E checkpoint (default: the shipped one)"),
                  out: Optional[Path] = typer.Option(None, help="write the figures to this JSON file")) -> None:
    """Open-loop scores: the agent's plan against the human's recorded future (--data ngsim, --scenarios DIR)
    with constant-velocity/acceleration baselines, or an E2E model against the expert on recorded episodes."""
    import json
    if scenarios is not None or data == ["ngsim"]:
        from dualdrive.agents.e2e.agent import network_alone
        _use_checkpoint(checkpoint)
        with network_alone():  # open loop scores the network's plan; the guard and the probe are closed-loop aids
            res = _human_openloop(agent, split, scenarios, stride_s, max_clips)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1))
        _print_human_openloop(res, out)
        return
    if not data:
        _fail("give --data ngsim [--split test], --scenarios DIR (CommonRoad XML), or --data DIR of a collected dataset")
    from dualdrive.agents.e2e.agent import resolve_checkpoint
    from dualdrive.agents.e2e.checkpoint import CheckpointError
    from dualdrive.data.format import DatasetError
    from dualdrive.training.openloop import evaluate_openloop
    if agent != "e2e":
        _fail(f"--agent {agent!r}: open-loop scoring on collected datasets needs a model that plans from dataset "
              "frames; only 'e2e' (any planning agent can be scored on human clips: --data ngsim)")
    try:
        ckpt = resolve_checkpoint(checkpoint)
        res = evaluate_openloop(ckpt, [Path(d) for d in data])
    except (CheckpointError, DatasetError) as e:
        _fail(str(e))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    coll = "/".join("-" if res[f"collision_{h}s"] is None else f"{100 * res[f'collision_{h}s']:.1f}%" for h in (1, 2, 3))
    _console.print(f"e2e ({ckpt}) on {res['episodes']} episodes, {res['frames']} frames: L2 at 1/2/3 s "
                   f"{res['l2_1s_m']:.2f}/{res['l2_2s_m']:.2f}/{res['l2_3s_m']:.2f} m (avg {res['l2_avg_m']:.2f}), "
                   f"plan collisions {coll}" + (f" -> {out}" if out else ""))


def _human_openloop(agent: str, split: str, scenarios: Optional[Path], stride_s: float,
                    max_clips: Optional[int]) -> dict:
    from dualdrive.agents.registry import load_agent
    from dualdrive.human.openloop import evaluate_human_openloop, load_clips
    from dualdrive.human.pack import HumanDataError, folder_files, split_files
    from dualdrive.human.replay import FUTURE_S, HISTORY_S
    from dualdrive.sensors.suite import SensorSuite
    try:
        a = load_agent(agent)
        if a.privileged:
            raise ConfigError(f"agent {agent!r} drives from the dualdrive world's ground truth (HD map, actors), "
                              "which a replayed human scene does not have; score a sensor or route agent (e2e, modular)")
        files = folder_files(scenarios) if scenarios is not None else split_files(split)
        clips = load_clips(files, HISTORY_S, FUTURE_S, stride_s, max_clips)
        with Progress(TextColumn("[bold]open loop[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} clips"),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("", total=len(clips))
            res = evaluate_human_openloop(clips, a, wrap=SensorSuite if a.uses_sensors else None,
                                          progress=lambda n: bar.update(task, completed=n))
    except (ConfigError, HumanDataError) as e:
        _fail(str(e))
    res["summary"]["source"] = str(scenarios) if scenarios is not None else f"ngsim:{split}"
    return res


def _print_human_openloop(res: dict, out: Optional[Path]) -> None:
    s = res["summary"]
    _console.print(f"open loop on {s['source']}: {s['clips']} clips from {s['scenarios']} scenarios")
    _console.print(f"  {'method':<24} {'L2 1s':>6} {'2s':>6} {'3s':>6} {'ADE':>6} {'coll.':>6} {'offroad':>7}")
    for m, r in res["methods"].items():
        _console.print(f"  {m:<24} {r['l2_1s_m']:6.2f} {r['l2_2s_m']:6.2f} {r['l2_3s_m']:6.2f} {r['ade_m']:6.2f} "
                       f"{100 * r['collision_rate']:5.1f}% {100 * r['offroad_rate']:6.1f}%")
    if s.get("l2_3s_ratio_to_constant_velocity") is not None:
        _console.print(f"  L2 at 3 s / constant velocity's: {s['l2_3s_ratio_to_constant_velocity']:.2f}")
    if out:
        _console.print(f"-> {out}")


@app.command("eval-speed-regressor")
def eval_speed_regressor(train_split: str = typer.Option("train", help="the NGSIM split the regressor is fitted on"),
                         split: str = typer.Option("test", help="the NGSIM split it is scored on"),
                         stride_s: float = typer.Option(1.0, help="test clips: one planning time per car every this many s"),
                         train_stride_s: float = typer.Option(0.5, help="training clips: one every this many s"),
                         loss: str = typer.Option("squared_error", help="the trees' loss: squared_error (the mean "
                                                  "distance) or absolute_error (the median, what a mean L2 rewards)"),
                         out: Optional[Path] = typer.Option(None, help="write the figures to this JSON file")) -> None:
    """How much of the human's speed a 1 s clip tells: gradient-boosted trees on privileged log features
    (ego history, cars ahead and beside), the route at the predicted distances, scored like eval-openloop."""
    import json
    from dualdrive.human.openloop import load_clips
    from dualdrive.human.pack import HumanDataError, split_files
    from dualdrive.human.replay import FUTURE_S, HISTORY_S
    from dualdrive.human.speed_regressor import LOSSES, RegressorConfig, evaluate_speed_regressor
    if loss not in LOSSES:
        _fail(f"--loss {loss!r}: one of {', '.join(LOSSES)}")
    try:
        train = load_clips(split_files(train_split), HISTORY_S, FUTURE_S, train_stride_s)
        test = load_clips(split_files(split), HISTORY_S, FUTURE_S, stride_s)
        with Progress(TextColumn("[bold]{task.description}[/bold]"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} clips"), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, n: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=n)
            res = evaluate_speed_regressor(train, test, RegressorConfig(loss=loss), progress=progress)
    except HumanDataError as e:
        _fail(str(e))
    res["summary"]["source"] = f"ngsim: fitted on {train_split}, scored on {split}"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    _console.print(f"speed regressor, {res['summary']['source']} ({len(train)} / {len(test)} clips)")
    _console.print(f"  {'method':<36} {'L2 1s':>6} {'2s':>6} {'3s':>6} {'/ CV':>6} {'coll.':>6}")
    for m, r in res["methods"].items():
        ratio = res["summary"].get(f"{m}_l2_3s_ratio_to_constant_velocity")
        _console.print(f"  {m:<36} {r['l2_1s_m']:6.2f} {r['l2_2s_m']:6.2f} {r['l2_3s_m']:6.2f} {ratio:6.2f} "
                       f"{100 * r['collision_rate']:5.1f}%")
    if out:
        _console.print(f"-> {out}")


@app.command("model-pipeline")
def model_pipeline(out: Path = typer.Option(Path("runs/model"), help="run directory (resumable)"),
                   config: Optional[Path] = typer.Option(None, help="YAML of PipelineConfig fields (sizes, seeds)"),
                   stages: str = typer.Option("all", help="comma-separated stages to run (collect, collect-val, "
                                              "train, dagger, openloop, closedloop, latency, ship) or all")) -> None:
    """`make model`: collect, train, (DAgger), score and ship the default E2E checkpoint; resumable."""
    from dualdrive.data.format import DatasetError
    from dualdrive.training.loop import TrainingError
    from dualdrive.training.pipeline import STAGES, PipelineConfig, run_pipeline
    try:
        cfg = PipelineConfig.from_file(config) if config else PipelineConfig()
        chosen = STAGES if stages == "all" else tuple(s.strip() for s in stages.split(",") if s.strip())
        times = run_pipeline(cfg, out, chosen,
                             log=lambda m: err.print(m))
    except (ConfigError, DatasetError, TrainingError) as e:
        _fail(str(e))
    _console.print("stage wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


def _print_card(card: dict, root: Path) -> None:
    sr = "-" if card["success_rate"] is None else f"{100 * card['success_rate']:.0f}%"
    _console.print(f"dataset {root}: {card['episodes']} episodes, {card['frames']} frames, "
                   f"{card['hours_of_driving']:.2f} h of driving, success {sr}, DART sigma {card['dart_sigma_mps2']} "
                   f"-> {root / 'card.md'}")


if __name__ == "__main__":
    sys.exit(app())


@app.command()
def instruct(text: str = typer.Argument(..., help='what the passenger says, e.g. "take the next exit and park near '
                                        'the entrance"'),
             as_json: bool = typer.Option(False, "--json", help="print the full reading (clauses, labels, confidence) as JSON")) -> None:
    """Read a passenger instruction: what the car understood (route, spot, driving style, stop), or what it asks or
    refuses, with the reply it gives. Parsed offline with the all-MiniLM-L6-v2 sentence embeddings."""
    import json
    from dualdrive.instructions.parser import InstructionError, InstructionParser
    try:
        u = InstructionParser().understand(text)
    except InstructionError as e:
        _fail(str(e))
    if as_json:
        _console.print(json.dumps(u.to_json(), indent=1))
        return
    _console.print(f"{u.status.value} (confidence {u.confidence:.2f}): {u.intent.slots() or '{}'}")
    _console.print(u.reply)


@app.command("eval-instructions")
def eval_instructions(file: Optional[Path] = typer.Option(None, help="held-out phrasings with expected readings (YAML; "
                                                          "default: data/instructions/heldout.yaml)"),
                      threshold: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="confidence below which the car "
                                                                "asks (default: the parser's)"),
                      out: Optional[Path] = typer.Option(None, help="write the scores and every reading to this JSON file")) -> None:
    """Score the instruction parser on held-out phrasings: accuracy, per status and slot, refusal recall, a threshold sweep."""
    import json
    from dualdrive.instructions.evaluate import HELDOUT, evaluate_instructions, load_heldout
    from dualdrive.instructions.parser import InstructionError, InstructionParser, ParserConfig
    try:
        entries = load_heldout(file or HELDOUT)
        cfg = ParserConfig() if threshold is None else ParserConfig(threshold=threshold)
        res = evaluate_instructions(InstructionParser(cfg), entries)
    except InstructionError as e:
        _fail(str(e))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    s = res["summary"]
    _console.print(f"{s['n']} phrasings, threshold {s['threshold']}: accuracy {100 * s['accuracy']:.1f}%, status "
                   f"{100 * s['status_accuracy']:.1f}%, refusal recall {100 * (s['refusal_recall'] or 0):.1f}%, "
                   f"false refusals {s['false_refusals']}, {s['latency_ms_mean']:.0f} ms each")
    for st, b in s["by_status"].items():
        _console.print(f"  expected {st:8s} n={b['n']:3d} correct {100 * b['accuracy']:5.1f}%  read as {b['predicted']}")
    _console.print("  slot recall on ok: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in s["slot_recall_on_ok"].items()))
    _console.print("  threshold sweep (accuracy / refusal recall): " + ", ".join(
        f"{th}: {100 * v['accuracy']:.0f}/{100 * (v['refusal_recall'] or 0):.0f}" for th, v in s["threshold_sweep"].items())
        + (f" -> {out}" if out else ""))


# System 2's driving VLM (dualdrive/vlm/): dataset from the expert, training, held-out evaluation
from dualdrive.vlm.commands import eval_vlm_cmd, gen_vlm_data, train_vlm_cmd  # noqa: E402

app.command("gen-vlm-data")(gen_vlm_data)
app.command("train-vlm")(train_vlm_cmd)
app.command("eval-vlm")(eval_vlm_cmd)


@app.command("serve-vlm")
def serve_vlm(checkpoint: Optional[Path] = typer.Option(None, help="VLM checkpoint (default: the shipped one)"),
              host: str = typer.Option("127.0.0.1", help="address to bind (loopback unless --allow-remote)"),
              port: int = typer.Option(8000, min=1, max=65535),
              api_key: Optional[str] = typer.Option(None, envvar="DUALDRIVE_VLM_API_KEY",
                                                    help="require `Authorization: Bearer KEY`"),
              max_request_bytes: int = typer.Option(4 * 1024 * 1024, help="refuse larger requests (HTTP 413)"),
              timeout_s: float = typer.Option(10.0, help="an answer slower than this is HTTP 504"),
              allow_remote: bool = typer.Option(False, "--allow-remote", help="allow binding beyond loopback")) -> None:
    """Serve the builtin driving VLM on an OpenAI-compatible chat-completions API (POST /v1/chat/completions)."""
    from dualdrive.agents.e2e.checkpoint import CheckpointError
    from dualdrive.vlm.backend import BuiltinBackend
    from dualdrive.vlm.server import ServerConfig, serve
    try:
        cfg = ServerConfig(host, port, api_key, max_request_bytes, timeout_s, allow_remote=allow_remote)
        backend = BuiltinBackend(checkpoint)
    except (ValueError, CheckpointError) as e:
        _fail(str(e))
    err.print(f"serving the driving VLM on http://{host}:{port}/v1 (chat completions)"
              + (", API key required" if api_key else ""))
    serve(backend, cfg)
