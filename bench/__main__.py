"""`python -m bench [--quick]`: gymctl beside NeMo Gym 0.7.0 on the example environment; prints, saves and plots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import report
from bench.harness import QUICK_MIN_FLOOR_RATIO, RESULTS_DIR, SYSTEMS, Plan, run, run_quick


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"gymctl all-in-one only (<1 min): throughput / echo floor, exit 1 below {QUICK_MIN_FLOOR_RATIO}")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, from: " + ", ".join(SYSTEMS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--singles", type=int, default=50, help="sequential /run calls for the latency median")
    parser.add_argument("--sweep", default="64,1024,4096,10000", help="in-flight counts; empty for none")
    parser.add_argument("--sweep-system", default="gymctl_all_in_one", choices=list(SYSTEMS))
    parser.add_argument("--sweep-ideal", type=float, default=None, help="ideal rollouts/s the stub delay is set for")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--scale-sweep", default="", help="in-flight points through gymctl collect against gymctl separated, workers as each "
                        "needs, beside NeMo Gym at 64 and 1,000 (bench.scale --sweep), e.g. 64,1000,10000,65000; runs only that")
    args = parser.parse_args(argv)
    if args.scale_sweep:
        from bench import scale

        points = _ints(args.scale_sweep)
        args.out.mkdir(parents=True, exist_ok=True)
        scale.sweep(points, args.out / "scale-logs", out=args.out / "scale.json")
        return 0

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.rounds < 1 or args.requests < 1 or args.concurrency < 1 or args.singles < 1:
        parser.error("--rounds, --requests, --concurrency and --singles must be >= 1")
    if args.quick:
        plan = Plan(systems=["gymctl_all_in_one"], rounds=1, requests=args.requests, concurrency=args.concurrency,
                    singles=min(args.singles, 20), sweep=[], quick=True, out_dir=args.out)
    else:
        plan = Plan(systems=systems, rounds=args.rounds, requests=args.requests, concurrency=args.concurrency,
                    singles=args.singles, sweep=_ints(args.sweep), sweep_system=args.sweep_system,
                    sweep_ideal=args.sweep_ideal, out_dir=args.out)
    try:
        result, code = run_quick(plan) if plan.quick else run(plan)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    stem = "quick" if plan.quick else "latest"
    (plan.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(report.table(result))
    if plan.quick:
        ratio = result["systems"]["gymctl_all_in_one"].get("of_echo_floor")
        ok = ratio is not None and ratio >= QUICK_MIN_FLOOR_RATIO
        cpu_ratio = result["systems"]["gymctl_all_in_one"].get("cpu_of_echo_floor")
        print(f"quick: gymctl all-in-one throughput / echo floor = {ratio} (minimum {QUICK_MIN_FLOOR_RATIO}): "
              f"{'OK' if ok else 'REGRESSION'}; by CPU per request = {cpu_ratio}")
        code = code or (0 if ok else 1)
    else:
        report.plot(result, plan.out_dir / "latest.png")
        print(f"saved {plan.out_dir / 'latest.json'} and {plan.out_dir / 'latest.png'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
