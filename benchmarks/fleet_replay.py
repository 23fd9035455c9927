"""Fleet replay against sequential replay: N record-sample bags replayed one after the other (the
``replay`` code path, one process) and by ``replay-fleet`` on a local Ray over all cores.

    python benchmarks/fleet_replay.py --out benchmarks/results/fleet_replay.json

Prints and writes: the sequential wall time; the fleet's Ray start and wall time (tasks only);
the runner's overhead per bag, i.e. the task slots' time not spent inside the bag task
((fleet wall x slots - sum of in-task times) / N: scheduling, worker start, result return, the
idle tail); and a second fleet pass over the complete outputs, where every bag is skipped after
hashing (the runner's cost per bag when there is nothing to do). Sequential replay runs with
--sequential-threads torch threads (default: as many as each fleet task, one per reserved CPU),
so the comparison is of parallel bags, not of thread counts; on a machine shared with other
busy processes, torch threads beyond the free cores slow a replay down many times over.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from jointperception.cli import main
from jointperception.commands.replay_fleet import SUMMARY_JSON
from jointperception.eval.replay import ReplaySettings
from jointperception.eval.replay_job import ReplayJob, replay_to_folder


def make_bags(root: Path, count: int, frames: int, size: str) -> list[Path]:
    bags = [root / f"bag{index:03d}" for index in range(count)]
    for index, bag in enumerate(bags):
        if main(["record-sample", "--out", str(bag), "--frames", str(frames), "--size", size,
                 "--seed", str(index)]) != 0:
            raise RuntimeError(f"record-sample failed for {bag}")
    return bags


def sequential(bags: list[Path], network_size: tuple[int, int], out: Path) -> dict:
    job = ReplayJob(network_size=network_size, settings=ReplaySettings())
    per_bag = []
    start = time.perf_counter()
    for bag in bags:
        begin = time.perf_counter()
        replay_to_folder(job, bag, out / bag.name / "out_bag", out / bag.name)
        per_bag.append(time.perf_counter() - begin)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "per_bag_s": wall / len(bags), "per_bag_max_s": max(per_bag)}


def fleet(bags: list[Path], network_size: tuple[int, int], out: Path, cpus: int, cpus_per_bag: float) -> dict:
    command = ["replay-fleet", *map(str, bags), "--out", str(out), "--num-cpus", str(cpus),
               "--cpus-per-bag", str(cpus_per_bag), "--network-size", "x".join(map(str, network_size))]
    start = time.perf_counter()
    status = main(command)
    command_s = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"replay-fleet exited {status}")
    summary = json.loads((out / SUMMARY_JSON).read_text())
    task_s = [row["task_s"] for row in summary["per_bag"]]
    slots = min(len(bags), math.floor(cpus / cpus_per_bag))
    return {"command_s": command_s, "ray_start_s": summary["ray_start_s"], "wall_s": summary["wall_s"],
            "counts": summary["counts"], "slots": slots, "task_s_mean": sum(task_s) / len(task_s),
            "runner_overhead_per_bag_s": (summary["wall_s"] * slots - sum(task_s)) / len(bags)}


def run(args: argparse.Namespace) -> dict:
    cpus = args.cpus or os.cpu_count() or 1
    network_size = tuple(int(v) for v in args.network_size.split("x"))
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        load_before = os.getloadavg()
        bags = make_bags(root / "bags", args.bags, args.frames, args.size)
        torch.set_num_threads(args.sequential_threads or math.ceil(args.cpus_per_bag))
        seq = sequential(bags, network_size, root / "sequential")
        first = fleet(bags, network_size, root / "fleet", cpus, args.cpus_per_bag)
        again = fleet(bags, network_size, root / "fleet", cpus, args.cpus_per_bag)
    return {
        "command": "python benchmarks/fleet_replay.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None),
        "machine": {"cpus": os.cpu_count(), "ray_cpus": cpus, "processor": platform.processor() or platform.machine(),
                    "load_average_1_5_15_before": load_before, "load_average_1_5_15_after": os.getloadavg()},
        "bags": args.bags, "frames_per_bag": args.frames, "bag_size": args.size, "network_size": args.network_size,
        "cpus_per_bag": args.cpus_per_bag,
        "sequential": {**seq, "torch_threads": torch.get_num_threads()},
        "fleet": first,
        "speedup_tasks_only": seq["wall_s"] / first["wall_s"],
        "speedup_with_ray_start": seq["wall_s"] / (first["wall_s"] + first["ray_start_s"]),
        "fleet_all_complete": {"counts": again["counts"], "wall_s": again["wall_s"],
                               "per_bag_s": again["wall_s"] / args.bags},
    }


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=8, help="bags (synthetic record-sample scenes, one seed each)")
    parser.add_argument("--frames", type=int, default=8, help="frames per bag")
    parser.add_argument("--size", default="160x120", help="frame size WxH")
    parser.add_argument("--network-size", default="160x120", help="network input size WxH")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--cpus-per-bag", type=float, default=1.0)
    parser.add_argument("--sequential-threads", type=int, default=None,
                        help="torch threads of the sequential replay (default: the fleet task's, ceil(cpus per bag))")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fleet_replay.json"))
    args = parser.parse_args()
    results = run(args)
    seq, first, again = results["sequential"], results["fleet"], results["fleet_all_complete"]
    print(f"{args.bags} bags x {args.frames} frames ({args.size}, network {args.network_size}), "
          f"{results['machine']['ray_cpus']} CPUs, load {results['machine']['load_average_1_5_15_before'][0]:.1f}")
    print(f"sequential replay ({seq['torch_threads']} torch threads): {seq['wall_s']:.1f} s "
          f"({seq['per_bag_s']:.2f} s per bag)")
    print(f"fleet on local Ray: start {first['ray_start_s']:.1f} s, tasks {first['wall_s']:.1f} s "
          f"({first['slots']} slots, {first['task_s_mean']:.2f} s in-task per bag); speedup "
          f"{results['speedup_tasks_only']:.2f}x tasks only, {results['speedup_with_ray_start']:.2f}x with the start")
    print(f"runner overhead per bag: {first['runner_overhead_per_bag_s']:.2f} s of slot time outside the task")
    print(f"re-run over complete outputs: {again['counts']} in {again['wall_s']:.1f} s ({again['per_bag_s']:.2f} s per bag)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_cli()
