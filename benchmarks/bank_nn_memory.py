"""Memory beyond the bank, and time, of the exact nearest-neighbour search (`ovi_bench.bank.neighbours.nearest_neighbours`).

    python benchmarks/bank_nn_memory.py                 # a random 1,000,000 × 1280 float32 bank (5.1 GB of RAM)
    python benchmarks/bank_nn_memory.py --rows 100000   # smaller

The bank is allocated and filled in place first; the search must then stay within O(queries × chunk + chunk × D)
of extra memory (target: at most 2 GB beyond the bank), because it never copies or normalises the bank as a whole.
Two cases: with the bank's inverse norms precomputed (what `EmbeddingBank.nearest` does; the [N] float32 vector is
allocated before the baseline) and with the norms computed chunk by chunk.

Peak memory is measured two ways against the resident set size (RSS) once the bank, the queries and the inverse norms
are allocated (the baseline): an RSS sampled every millisecond by a thread, and the kernel's peak RSS (`ru_maxrss`),
which counts only when a search raised it. The allocator may keep memory that a search freed, so a case measured after
another reports at most the larger of the two (an upper bound); `--norms` runs one case alone. Prints one Markdown
table row per case.
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import statistics
import threading
import time

import psutil
import torch

from ovi_bench.bank.neighbours import bank_inverse_norms, nearest_neighbours

MIB = 1 << 20


class PeakRss:
    """Samples this process's RSS in a background thread while the `with` block runs."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def max_rss_bytes() -> int:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(
    baseline: int,
    bank: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    chunk_size: int,
    inverse_norms: torch.Tensor | None,
    repeats: int,
) -> tuple[float, float | None, float]:
    """(sampled peak MiB beyond the baseline, ru_maxrss peak MiB beyond it or None, median seconds per batch)."""
    gc.collect()
    kernel_peak_before = max_rss_bytes()
    times = []
    with PeakRss() as sampler:
        for _ in range(repeats):
            start = time.perf_counter()
            nearest_neighbours(queries, bank, k, bank_inverse_norms=inverse_norms, chunk_size=chunk_size)
            times.append(time.perf_counter() - start)
    kernel_peak_after = max_rss_bytes()
    # ru_maxrss is the lifetime peak: it says something about the search only when the search raised it.
    kernel = (kernel_peak_after - baseline) / MIB if kernel_peak_after > kernel_peak_before else None
    return (sampler.peak - baseline) / MIB, kernel, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="bank rows (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=1280, help="embedding width (default 1280, Kandinsky 2.2)")
    parser.add_argument("--queries", type=int, default=32, help="query batch size (default 32)")
    parser.add_argument("-k", type=int, default=8, help="neighbours per query (default 8)")
    parser.add_argument("--chunk-size", type=int, default=65536, help="bank rows per chunk (default 65536)")
    parser.add_argument(
        "--norms",
        choices=("both", "precomputed", "per-chunk"),
        default="both",
        help="which case(s) to run: inverse norms precomputed, computed per chunk, or both (default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="searches per case; the median time is reported"
    )
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    bank = torch.empty(args.rows, args.dim, dtype=torch.float32)
    bank.normal_(generator=generator)  # in place: no temporary the size of the bank
    queries = torch.randn(args.queries, args.dim, generator=generator)
    inverse_norms = bank_inverse_norms(bank, chunk_size=args.chunk_size)
    setup_s = time.perf_counter() - start
    gc.collect()
    baseline = psutil.Process().memory_info().rss
    bank_mib = bank.numel() * bank.element_size() / MIB
    print(
        f"bank {args.rows:,} × {args.dim} float32 = {bank_mib:,.0f} MiB, filled in {setup_s:.1f} s; "
        f"RSS now {baseline / MIB:,.0f} MiB; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {psutil.cpu_count()} CPUs\n"
    )
    print(
        "| bank | queries | k | chunk | inverse norms | peak beyond bank, sampled (MiB) | "
        "peak beyond bank, ru_maxrss (MiB) | time per query batch (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    cases = {"precomputed": inverse_norms, "per-chunk": None}
    for label, norms in cases.items():
        if args.norms not in ("both", label):
            continue
        sampled, kernel, seconds = measure(
            baseline, bank, queries, args.k, args.chunk_size, norms, args.repeats
        )
        kernel_text = f"{kernel:,.0f}" if kernel is not None else "not raised"
        print(
            f"| {args.rows:,} × {args.dim} | {args.queries} | {args.k} | {args.chunk_size:,} | {label} | "
            f"{sampled:,.0f} | {kernel_text} | {seconds:.3f} |"
        )


if __name__ == "__main__":
    main()
