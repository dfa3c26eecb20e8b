"""Benchmarks of gymctl beside NeMo Gym 0.7.0: upstream stub, neutral load client, harness (`python -m bench`)."""
