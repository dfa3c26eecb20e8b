"""A GRPO-shaped loop on Ray: a stand-in trainer serves generation, GymActor in the same cluster collects rollouts with token ids.

    python examples/trainer/ray_grpo.py [--steps 3] [--prompts 4] [--group 4]       # starts a local Ray cluster, stops it after
    RAY_ADDRESS=HOST:PORT python examples/trainer/ray_grpo.py                          # or joins yours (same Ray and Python versions)

The "trainer" is a Ray actor holding an OpenAI-compatible /v1/chat/completions endpoint (gymctl's test double of vLLM:
it calls the offered tool, then answers, with token ids and logprobs). A real trainer passes its vLLM servers' URLs,
one per data-parallel rank (`http://{node_ip}:{port}/v1`). Each step: G rollouts per prompt, streamed as they finish;
the group-relative advantage of each (reward minus its group's mean) and the tokens a policy update would train on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import ray

from gymctl.ray import GymActor
from gymctl.ray.cluster import connect

REPO = Path(__file__).resolve().parents[2]
AGENT = "example_single_tool_call_simple_agent"
CONFIGS = ["resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
           "responses_api_models/vllm_model/configs/vllm_model.yaml"]
DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"
STUB = REPO / "servers/responses_api_models/vllm_model/tests/chat_stub.py"


@ray.remote(num_cpus=0)
class StandInTrainer:
    """Holds the generation endpoint (a real trainer: its vLLM engines with the HTTP server exposed)."""

    def __init__(self) -> None:
        spec = importlib.util.spec_from_file_location("chat_stub", STUB)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        self.stub = module.ChatStub()
        self.serving = self.stub.in_thread()
        self.serving.__enter__()

    def base_urls(self) -> list[str]:
        return [self.stub.base_url]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    args = parser.parse_args()
    cluster = connect(os.environ.get("RAY_ADDRESS"))  # a local cluster in its own temp folder unless RAY_ADDRESS names one
    try:
        trainer = StandInTrainer.remote()
        overrides = {"policy_model.responses_api_models.vllm_model.return_token_id_information": True}
        gym = GymActor.options(num_cpus=0).remote(CONFIGS, overrides, base_urls=ray.get(trainer.base_urls.remote()), model_name="stub-model",
                                                  cwd=str(REPO))
        head_url = ray.get(gym.start.remote())
        print(f"gym head at {head_url}", file=sys.stderr)
        prompts = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
        for step in range(args.steps):
            batch = [prompts[(step * args.prompts + p) % len(prompts)] for p in range(args.prompts)]
            rows = [{**row, "agent_ref": {"name": AGENT}} for row in batch for _ in range(args.group)]
            rewards: dict[int, float] = {}
            tokens = 0
            for ref in gym.run_rollouts_streaming.remote(rows):
                index, result = ray.get(ref)
                rewards[index] = result["reward"]
                tokens += sum(len(i["generation_token_ids"]) for i in result["response"]["output"] if "generation_token_ids" in i)
            groups: dict[int, list[float]] = defaultdict(list)
            for index, reward in rewards.items():
                groups[index // args.group].append(reward)
            advantages = [rewards[i] - sum(groups[i // args.group]) / args.group for i in range(len(rows))]
            mean = sum(rewards.values()) / len(rewards)
            print(json.dumps({"step": step, "rollouts": len(rows), "mean_reward": mean, "generated_tokens": tokens,
                              "max_abs_advantage": max(abs(a) for a in advantages)}), flush=True)
        ray.get(gym.health_check.remote())
        ray.get(gym.shutdown.remote())
        ray.kill(gym)
        ray.kill(trainer)
    finally:
        cluster.stop()
        print(f"stopped{' the local Ray cluster, removed ' + cluster.temp_dir if cluster.temp_dir else ''}", file=sys.stderr)


if __name__ == "__main__":
    main()
