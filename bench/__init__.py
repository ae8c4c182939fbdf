"""hwgrade benchmarks: `python -m bench.grading`, `python -m bench.api_load` (see bench/README.md)."""
