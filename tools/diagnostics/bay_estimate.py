"""How well does a car standing in a bay measure that bay from its parked neighbours? The error of
``bay_from_neighbours`` (the modular parking function's correction, which System 1's parking assist uses too).

The ego is placed in free target bays of the P2P destination car parks (seeds 5000, 5002, ..., 5014; six bays
each, four placements a bay), reversed in as the parking function leaves it: up to 0.9 m off the bay's centre
across, 1.1 m in depth and 9 degrees askew, the errors its reversing leaves. The sensor suite renders the LiDAR
frame there, the modular perception clusters it, and the estimate is compared with the world's bay:

    .venv/bin/python tools/diagnostics/bay_estimate.py [--placements 4]

A neighbouring bay a pitch over counts as right (it was free in every placement that measured it), the
position error is the distance to the nearer of the two. Prints the mean, median and 90th percentile error,
the share over 0.3 m (the correction's threshold) and over 0.5 m (the world's tolerance), the placements with
no neighbour seen, and the error of the bay's heading.
"""
from __future__ import annotations

import argparse

import numpy as np

from dualdrive.agents.modular.agent import ModularAgent
from dualdrive.agents.modular.parking import BAY_PITCH_M, bay_from_neighbours
from dualdrive.agents.modular.perception import detect_objects
from dualdrive.run.drive import env_for, resolve_scenario
from dualdrive.world.scenarios import ScenarioConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--placements", type=int, default=4, help="placements a bay")
    ap.add_argument("--bays", type=int, default=6, help="bays a car park")
    args = ap.parse_args()
    family, env_id = resolve_scenario("p2p")
    env = env_for(ModularAgent(), env_id, ScenarioConfig(family=family))
    rng = np.random.default_rng(0)
    pos_err, yaw_err, unseen, n = [], [], 0, 0
    for seed in range(5000, 5016, 2):
        env.reset(seed=seed)
        world = env.unwrapped.world
        bays = list(world.free_target_spots)
        rng.shuffle(bays)
        for sid in bays[:args.bays]:
            spot = world.map.spots[sid]
            out = spot.heading_rad + np.pi  # reversed in: facing the aisle
            axis = np.array([np.cos(out), np.sin(out)])
            across = np.array([-axis[1], axis[0]])
            for _ in range(args.placements):
                da, dd, dh = rng.uniform(-0.9, 0.9), rng.uniform(-1.1, 1.1), np.radians(rng.uniform(-9.0, 9.0))
                xy, heading = spot.center_xy + dd * axis + da * across, out + dh
                world.ego.position, world.ego.heading, world.ego.speed = xy.copy(), heading, 0.0
                obs = env.observation(world.observation())
                points = obs["lidar_points_m"][: int(obs["lidar_num_points"][0])]
                fix = bay_from_neighbours(detect_objects(points), points)
                n += 1
                if fix is None:
                    unseen += 1
                    continue
                c, s = np.cos(heading), np.sin(heading)
                rel = spot.center_xy - xy
                truth = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1]])
                err = fix.centre - truth
                pos_err.append(min(np.linalg.norm(err - k * BAY_PITCH_M * np.array([0.0, 1.0])) for k in (-1, 0, 1)))
                yaw_err.append(abs(np.degrees(fix.yaw_rad + dh)))
    e = np.array(pos_err)
    print(f"placements {n}, no neighbour seen {unseen}")
    print(f"position error: mean {e.mean():.3f} m, median {np.median(e):.3f}, p90 {np.quantile(e, 0.9):.3f}; "
          f"over 0.3 m {np.mean(e > 0.3):.1%}, over 0.5 m {np.mean(e > 0.5):.1%}")
    print(f"heading error: mean {np.mean(yaw_err):.2f} deg, p90 {np.quantile(yaw_err, 0.9):.2f}")


if __name__ == "__main__":
    main()
