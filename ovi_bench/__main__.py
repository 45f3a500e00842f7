"""`python -m ovi_bench`: the same as the `ovi-bench` command."""

from ovi_bench.cli import main

main()
