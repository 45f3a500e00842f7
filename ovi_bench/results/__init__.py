"""Results: what is read from finished run folders (records), aggregated (leaderboard, summary, statistics),
compared (comparison), checked against a baseline (baseline, regression) and shown (report). Nothing here imports
the run machinery: a folder written by any version of the runner, or by another machine, reads the same."""
