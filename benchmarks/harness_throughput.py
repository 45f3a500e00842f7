"""Work items per second of the harness itself: a fresh run with instant stand-in models (see instant_components.py).

Usage:
    python benchmarks/harness_throughput.py [--prompts 300] [--categories 8] [--seeds 10] [--priors 1] [--repeats 3]
                                            [--workdir DIR] [--profile]

Fresh runs, each into a new folder (by default 24,000 items, the size of one prior's official run): plan, embed,
decode, store (atomic files, manifest), score (score cache) and results (`write_results`: scores.csv, leaderboard,
provenance), timed as a whole and per stage. The stand-ins cost
microseconds per item, so the figure is the harness's own cost per image; a GPU renders about 10 images/s, so the
harness must do at least 2,000 items/s to stay under 0.5% of a real run. The median of `--repeats` runs is reported
(this machine's disk is shared and noisy). `--profile` prints the cProfile top 25 of the last run.
"""

from __future__ import annotations

import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import torch
from instant_components import instant_spec, run_shape_arguments, write_prompt_file

from ovi_bench.provenance import write_results
from ovi_bench.runner import Runner
from ovi_bench.spec import RunSpec, parse_spec

TARGET_ITEMS_PER_SECOND = 2000


class StageTimer:
    """Wall time of each runner stage, by wrapping the methods of one Runner (and of its Scorer) on the instance."""

    def __init__(self, stages: dict[str, tuple[object, str]]) -> None:
        """`stages`: label -> (instance, name of the method to time)."""
        self.seconds: dict[str, float] = dict.fromkeys(stages, 0.0)
        for stage, (owner, name) in stages.items():
            method = getattr(owner, name)

            def timed(*args, _method=method, _stage=stage, **kwargs):
                start = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.seconds[_stage] += time.perf_counter() - start

            setattr(owner, name, timed)


def fresh_run(spec: RunSpec, out: Path, profiler: cProfile.Profile | None) -> dict[str, float]:
    """One fresh run into `out`: seconds of the whole (Runner.run + write_results), of each stage and of the results."""
    runner = Runner(spec, out, show_progress=False)
    stages = StageTimer(
        {
            "embed": (runner, "embed"),
            "decode": (runner, "decode"),
            "score": (runner.scorer, "score_per_image"),
            "describe_embeddings": (runner, "describe_embeddings"),
        }
    )
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = runner.run()
    assert result is not None
    run_done = time.perf_counter()
    write_results(result)
    total = time.perf_counter() - start
    if profiler:
        profiler.disable()
    assert result.counts.images_generated == len(result.items), "the run folder was not fresh"
    return {
        "total": total,
        "Runner.run": run_done - start,
        **stages.seconds,
        "write_results": total - (run_done - start),
    }


def main() -> None:
    parser = run_shape_arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs, each into a new folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the stand-ins need one)")
    parser.add_argument("--profile", action="store_true", help="print the cProfile top 25 of the last run")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    work = Path(tempfile.mkdtemp(prefix="ovi-bench-harness-", dir=arguments.workdir))
    try:
        prompt_file = write_prompt_file(work / "prompts.csv", arguments.prompts, arguments.categories)
        spec = parse_spec(
            instant_spec(prompt_file, priors=arguments.priors, images_per_prompt=arguments.seeds)
        )
        items = arguments.priors * arguments.categories * arguments.prompts * arguments.seeds
        print(
            f"{items} work items ({arguments.priors} prior(s) × {arguments.categories} categories × "
            f"{arguments.prompts} prompts × {arguments.seeds} seeds), torch threads {arguments.threads}, "
            f"run folders under {work}"
        )
        runs = []
        for repeat in range(arguments.repeats):
            last = repeat == arguments.repeats - 1
            profiler = cProfile.Profile() if arguments.profile and last else None
            runs.append(fresh_run(spec, work / f"run-{repeat}", profiler))
            shutil.rmtree(work / f"run-{repeat}")
            print(f"  run {repeat + 1}: {runs[-1]['total']:.2f} s, {items / runs[-1]['total']:.0f} items/s")
        median = sorted(runs, key=lambda run: run["total"])[len(runs) // 2]
        print("median run, by part:")
        for part, seconds in median.items():
            print(f"  {part:<20}{seconds:7.2f} s  {items / seconds:8.0f} items/s")
        rate = items / median["total"]
        verdict = "meets" if rate >= TARGET_ITEMS_PER_SECOND else "MISSES"
        print(
            f"median fresh run: {rate:.0f} items/s ({verdict} the target of {TARGET_ITEMS_PER_SECOND} items/s)"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
