"""Where a collection writes: the output, `<stem>_failures.jsonl`, `<stem>_aggregate_metrics.json`; checked up front."""

from __future__ import annotations

import os
from pathlib import Path

from gymctl.errors import InputError, UsageError


def failures_path_for(output: Path) -> Path:
    return output.with_name(f"{output.stem}_failures.jsonl")


def aggregate_metrics_path_for(output: Path) -> Path:
    return output.with_name(f"{output.stem}_aggregate_metrics.json")


def check_paths(input_path: Path, output_path: Path) -> None:
    """Fail before any request when the input cannot be read or the output cannot be written."""
    if not input_path.exists():
        raise InputError(f"input file not found: {input_path}; pass an existing JSONL file with --input (+input_jsonl_fpath=)")
    if not input_path.is_file():
        raise InputError(f"input {input_path} is not a file; pass a JSONL file with one task per line")
    parent = output_path.parent
    if not parent.exists():
        raise UsageError(f"output directory {parent} does not exist; create it (mkdir -p {parent}) or choose another --output")
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} is not a directory; choose another --output")
    if output_path.exists() and not output_path.is_file():
        raise UsageError(f"output {output_path} exists and is not a file; choose another --output")
    if not os.access(output_path if output_path.exists() else parent, os.W_OK):
        what = f"output {output_path} is" if output_path.exists() else f"output directory {parent} is"
        raise UsageError(f"{what} not writable; choose another --output (or fix its permissions)")
    if output_path.resolve() == input_path.resolve():
        raise UsageError(f"--output {output_path} is the input file; write rollouts to another file")
