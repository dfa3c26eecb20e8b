"""Find the agent to collect from: its URL as clients outside the deployment reach it, through the head."""

from __future__ import annotations

import aiohttp

from gymctl.errors import ServerError, UnknownServerError, UsageError
from gymctl.server.client import ServerClient

AGENT_TYPES = ("responses_api_agents", "environment_servers")


async def resolve_agent(head_url: str, agent: str, *, session: aiohttp.ClientSession, token: str | None = None, head_wait_s: float = 10.0) -> str:
    """The base URL of `agent` (its published host URL when it has one).

    Raises UnknownServerError (listing the agents that are registered), UsageError when the name is
    a model or resources server, HeadUnreachableError when the head does not answer.
    """
    client = ServerClient(head_url, token=token, use_host_url=True, session=session, head_wait_s=head_wait_s)
    items = await client.instances()
    agents = sorted({i["process_name"] for i in items if i.get("server_type") in AGENT_TYPES})
    mine = [i for i in items if i.get("process_name") == agent]
    if not mine:
        raise UnknownServerError(agent, agents)
    kind = mine[0].get("server_type")
    if kind not in AGENT_TYPES:
        raise UsageError(
            f"{agent!r} is a {kind} instance, not an agent; rollouts are collected through an agent "
            f"(registered agents: {', '.join(agents) or 'none'})"
        )
    healthy = [i for i in mine if i.get("status", "healthy") == "healthy"] or mine
    url = healthy[0].get("host_url") or healthy[0].get("url")
    if not url:
        raise ServerError(f"the head lists {agent!r} without a URL", server=agent)
    return str(url).rstrip("/")
