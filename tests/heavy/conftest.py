"""Scenarios too heavy for every CI run (DESIGN.md, CI budget): NeMo Gym's own servers as containers build a 1.5 GB
Python 3.13 runtime layer and one image per server, ~30 minutes on 2 cores. `scripts/test.sh` leaves this folder out
unless GYMCTL_HEAVY_TESTS=1 (then it runs with the rest); alone, once set up: `.venv/bin/python -m pytest tests/heavy`."""
