"""Time to plan and skip a finished 24,000-item run: `ovi-bench run` again on a folder that holds everything.

Usage:
    python benchmarks/plan_and_skip.py [--prompts 300] [--categories 8] [--seeds 10] [--priors 1] [--repeats 3]
                                       [--workdir DIR] [--profile]

First makes two finished runs with the instant stand-in models (instant_components.py): the big one, by default
1 prior × 8 categories × 300 prompts × 10 seeds = 24,000 images (one prior's official T2I-CompBench++ run), and a
one-image run. Then, `--repeats` times each, times

1. `ovi-bench run SPEC --out DIR -q --plugins instant_components` on the big run as a fresh process (`python -m
   ovi_bench` with this folder on PYTHONPATH): interpreter start, imports, spec, planning, manifest and score cache
   reads, one stat per image, every result file written again;
2. the same command on the one-image run: what any `ovi-bench run` costs before it plans anything (interpreter start
   and the imports of torch, transformers and diffusers that registering the built-in components needs);
3. the big re-run inside this process (Runner.run + write_results, what the CLI calls), everything imported already.

The target is at most 5 s for planning and skipping; (3), and (1) minus (2), measure that. `--profile` prints the
cProfile top 30 of (3).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w
import torch
from instant_components import instant_spec, run_shape_arguments, write_prompt_file

from ovi_bench.provenance import write_results
from ovi_bench.runner import Runner
from ovi_bench.spec import load_spec

TARGET_SECONDS = 5.0
HERE = Path(__file__).resolve().parent


def finished_run(work: Path, name: str, prompts: int, categories: int, seeds: int, priors: int) -> Path:
    """Make a finished run folder; return its spec file."""
    prompt_file = write_prompt_file(work / f"{name}.csv", prompts, categories)
    spec_path = work / f"{name}.toml"
    spec_path.write_text(tomli_w.dumps(instant_spec(prompt_file, priors=priors, images_per_prompt=seeds)))
    seconds, generated, _ = run_in_process(spec_path, work / name)
    print(f"made the finished run '{name}' ({generated} images) in {seconds:.1f} s")
    return spec_path


def run_in_process(
    spec_path: Path, out: Path, profiler: cProfile.Profile | None = None
) -> tuple[float, int, int]:
    """(seconds of Runner.run + write_results, images generated, scores computed)."""
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = Runner(load_spec(spec_path), out, show_progress=False).run()
    assert result is not None
    write_results(result)
    if profiler:
        profiler.disable()
    return time.perf_counter() - start, result.counts.images_generated, result.counts.scores_computed


def cli_seconds(spec_path: Path, out: Path) -> float:
    command = [sys.executable, "-m", "ovi_bench", "run", str(spec_path), "--out", str(out), "-q"]
    command += ["--plugins", "instant_components"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = run_shape_arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="timed re-runs of each kind")
    parser.add_argument(
        "--profile", action="store_true", help="print the cProfile top 30 of the in-process re-run"
    )
    arguments = parser.parse_args()
    torch.set_num_threads(1)

    work = Path(tempfile.mkdtemp(prefix="ovi-bench-skip-", dir=arguments.workdir))
    try:
        items = arguments.priors * arguments.categories * arguments.prompts * arguments.seeds
        big = finished_run(
            work, "big", arguments.prompts, arguments.categories, arguments.seeds, arguments.priors
        )
        small = finished_run(work, "one-image", 1, 1, 1, 1)
        big_cli = [cli_seconds(big, work / "big") for _ in range(arguments.repeats)]
        small_cli = [cli_seconds(small, work / "one-image") for _ in range(arguments.repeats)]
        in_process = []
        for repeat in range(arguments.repeats):
            last = repeat == arguments.repeats - 1
            profiler = cProfile.Profile() if arguments.profile and last else None
            seconds, generated, computed = run_in_process(big, work / "big", profiler)
            assert generated == 0 and computed == 0, "the re-run computed something: the run was not finished"
            in_process.append(seconds)

        def show(label: str, seconds: list[float]) -> float:
            median = statistics.median(seconds)
            print(f"{label:<58}{median:6.2f} s  (runs: {', '.join(f'{s:.2f}' for s in seconds)})")
            return median

        print(f"re-running a finished run of {items} items, medians of {arguments.repeats}:")
        big_median = show(f"1. `ovi-bench run` on the {items}-item run, fresh process", big_cli)
        small_median = show("2. `ovi-bench run` on a one-image run (start-up alone)", small_cli)
        in_process_median = show(f"3. Runner.run + write_results on the {items}-item run", in_process)
        planning = big_median - small_median
        print(
            f"planning and skipping {items} items: {planning:.2f} s (1 − 2), {in_process_median:.2f} s in process (3)"
        )
        verdict = "meets" if max(planning, in_process_median) <= TARGET_SECONDS else "MISSES"
        print(f"  {verdict} the target of {TARGET_SECONDS:.0f} s; the whole command takes {big_median:.2f} s")
        if arguments.profile and profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
