from ovi_bench.cli import main

main()
