"""Benchmarks (`make bench`). Each module measures a goal as a ratio against a baseline in the
same run, prints a table and writes bench/results/<name>.json (DESIGN.md section 5)."""
