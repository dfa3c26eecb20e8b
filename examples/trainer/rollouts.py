"""A training loop's view of gymctl, no CLI: start the example environment, run rollouts of rows, read rewards, stop.

    python examples/trainer/rollouts.py                          # all-in-one, the scripted offline policy
    python examples/trainer/rollouts.py --topology separated     # one process per server
    python examples/trainer/rollouts.py --vllm http://127.0.0.1:8000/v1 --model NAME   # your vLLM: token ids on each turn

Prints one JSON line per rollout as it finishes ({"index", "reward", "turns_with_token_ids"}), then the mean reward.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from gymctl.api import Deployment, GymctlError

AGENT = "example_single_tool_call_simple_agent"
ENV = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
DATA = Path(__file__).resolve().parents[2] / "servers/resources_servers/example_single_tool_call/data/example.jsonl"


async def main(args: argparse.Namespace) -> float:
    if args.vllm:  # a trainer's generation servers: one URL per data-parallel rank
        configs = [ENV, "responses_api_models/vllm_model/configs/vllm_model.yaml"]
        overrides = {"policy_base_url": args.vllm, "policy_model_name": args.model, "policy_api_key": "dummy_key",
                     "policy_model.responses_api_models.vllm_model.return_token_id_information": True}
    else:
        configs = [ENV, "responses_api_models/scripted_model/configs/scripted_model.yaml"]
        overrides = {}
    input_rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    rows = [{**row, "agent_ref": {"name": AGENT}} for _ in range(args.repeats) for row in input_rows]

    dep = await Deployment.start(configs, overrides, topology=args.topology)
    try:
        rewards = []
        async for index, result in dep.run_rollouts(rows):
            turns = [item for item in result["response"]["output"] if "generation_token_ids" in item]
            rewards.append(result["reward"])
            print(json.dumps({"index": index, "reward": result["reward"], "turns_with_token_ids": len(turns)}), flush=True)
        return sum(rewards) / len(rewards)
    finally:
        await dep.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="all-in-one", choices=["all-in-one", "separated", "ray"])
    parser.add_argument("--vllm", action="append", help="an OpenAI-compatible base URL ending in /v1 (repeat for several ranks)")
    parser.add_argument("--model", default="policy")
    parser.add_argument("--repeats", type=int, default=4)
    try:
        mean = asyncio.run(main(parser.parse_args()))
    except GymctlError as e:  # the library's typed errors: say what and what to do, no traceback
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(f"mean reward {mean:.3f}", file=sys.stderr)
