"""The collector's POST /run: an agent that dies while sending its answer (the body cut short) is sent the rollout
again, as one that died before answering is; one that keeps cutting it fails typed, after a bounded number of tries."""

from __future__ import annotations

import asyncio

import aiohttp

from gymctl.rollouts.posting import RunPoster, RunTarget

WHOLE = b'{"reward": 1.0}'


async def _agent(cuts: int) -> tuple[asyncio.base_events.Server, list[int]]:
    """A raw HTTP agent on loopback: the first `cuts` requests get a 200 whose body stops half-way, then the connection
    closes (a kill -9 mid-answer); later ones get the whole answer."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        seen.append(len(seen))
        body = WHOLE if len(seen) > cuts else WHOLE[:5]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(WHOLE) + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def _post(server: asyncio.base_events.Server, retries: int):
    port = server.sockets[0].getsockname()[1]
    target = RunTarget("agent", f"http://127.0.0.1:{port}", {}, 10.0, retries)
    async with aiohttp.ClientSession() as session:
        return await RunPoster(target, session).post(b'{"task": 1}')


async def test_an_answer_cut_short_is_sent_again_and_the_whole_one_taken():
    server, seen = await _agent(cuts=1)
    async with server:
        posted = await _post(server, retries=3)
    assert (posted.status, posted.raw, posted.kind) == (200, WHOLE, None)
    assert len(seen) == 2


async def test_an_agent_that_keeps_cutting_its_answer_fails_typed_once_the_retry_window_ends(monkeypatch):
    from gymctl.rollouts import posting

    monkeypatch.setattr(posting, "RETRY_WINDOW_S", 1.0)  # 15 s by default: longer than an agent's restart
    server, seen = await _agent(cuts=1000)
    async with server:
        posted = await _post(server, retries=2)
    assert posted.status is None and posted.kind == "agent_request_failed"
    assert "unreachable after" in posted.reason and "ClientPayloadError" in posted.reason
    assert 2 <= len(seen) <= 10  # bounded: backoff from 0.2 s within the window
