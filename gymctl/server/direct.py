"""In-process calls straight to the route: a served app's checks and its route's FastAPI handler, no ASGI stack.

`DirectApp(served)` takes an app as `gymctl.server.kit.wrap_app` serves it (admission control, the body-size
limit, auth, then the FastAPI app with its metrics middleware) and answers `request(method, path, body,
headers, query)` as the same stack would over HTTP, but without its layers of ASGI calls:

- admission (the same counter as the socket's: one limit for both), the body limit and auth are checked here
  with the served middleware's own objects and reply bodies;
- the route is looked up once per (method, path) in a table of the app's static API routes, cross-checked
  against FastAPI's own matching on the first call of each; its FastAPI request handler (body parsing,
  pydantic validation, dependencies, the endpoint, response serialisation) runs as FastAPI runs it, and an
  exception goes to the app's exception handlers (422, HTTPException's status, custom handlers) or becomes
  the plain 500 the server error middleware sends;
- the metrics middleware's figures (requests, latency, in flight, rewards) are recorded as it records them.

Anything else -- a route with path parameters, an unknown path (404) or method (405), `/metrics`, an app
with middleware gymctl does not know, a streaming response -- goes through the full ASGI app as before
(`gymctl.server.asgi_dispatch.asgi_request`), so the answer is always the served app's.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from typing import Any

log = logging.getLogger("gymctl.dispatch")

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
_CLIENT = ("127.0.0.1", 0)  # what an in-process caller is (asgi_request says the same)
_PLAIN_500: Reply = (500, [(b"content-length", b"21"), (b"content-type", b"text/plain; charset=utf-8")], b"Internal Server Error")

# FastAPI's names, bound once by the first DirectApp (importing this module stays light; an
# import statement in a per-call function runs importlib's fromlist handling every call: ~5% of an in-process call's CPU).
Request: Any = None
Response: Any = None
JSONResponse: Any = None
HTTPException: Any = None
jsonable_encoder: Any = None


def _bind() -> None:
    global Request, Response, JSONResponse, HTTPException, jsonable_encoder
    if Request is None:
        from fastapi import Request, Response
        from fastapi.encoders import jsonable_encoder
        from fastapi.exceptions import StarletteHTTPException as HTTPException  # type: ignore[attr-defined]  # Starlette's: every HTTPException
        from fastapi.responses import JSONResponse


class _Route:
    """One static API route: the route object FastAPI puts in the scope, its request handler, and its endpoint when
    that handler would do nothing but hand the endpoint the Request (`endpoint`, `request_param`)."""

    __slots__ = ("checked", "endpoint", "handler", "request_param", "route")

    def __init__(self, route: Any, handler: Any, effective: Any = None) -> None:
        self.route = route
        self.handler = handler
        self.checked = False  # the first call goes through FastAPI's own matching, which must pick this route
        self.endpoint, self.request_param = _request_only(effective if effective is not None else route)


def _request_only(route: Any) -> tuple[Any, str]:
    """(endpoint, its Request parameter's name) when FastAPI's handler for `route` would only build the Request, call the
    endpoint with it and pass its Response on: `async def f(request: Request) -> Response` with no other parameter,
    dependency, response model, status code or response class (a server's /run, /verify, model calls); else (None, "").

    For those the handler's body reading, dependency solving and exit stacks do nothing; skipping them is most of what an
    in-process call costs beyond the endpoint itself."""
    import inspect

    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.responses import JSONResponse

    d = getattr(route, "dependant", None)
    call = getattr(d, "call", None)
    if d is None or call is None or d.request_param_name is None:
        return None, ""
    others = (d.path_params, d.query_params, d.header_params, d.cookie_params, d.body_params, d.dependencies)
    names = (d.websocket_param_name, d.http_connection_param_name, d.response_param_name, d.background_tasks_param_name,
             d.security_scopes_param_name)
    if any(others) or any(names) or not inspect.iscoroutinefunction(call):
        return None, ""
    response_class = getattr(route, "response_class", None)
    if (getattr(route, "response_field", None) is not None or getattr(route, "status_code", None) is not None
            or getattr(route, "is_json_stream", False) or getattr(route, "stream_item_field", None) is not None
            or not (isinstance(response_class, DefaultPlaceholder) and response_class.value is JSONResponse)):
        return None, ""
    return call, d.request_param_name


def _static_routes(app: Any) -> dict[tuple[str, str], _Route] | None:
    """(method, path) -> route for the app's API routes without path parameters; None if the app's routing is
    not the shape this knows (then every call takes the full ASGI path)."""
    try:
        from fastapi.routing import APIRoute, _effective_route_context_var, _IncludedRouter
    except ImportError:
        return None
    if getattr(app.router, "dependencies", None):
        return None
    table: dict[tuple[str, str], _Route] = {}

    def add(path: str, methods: Any, route: Any, handler: Any, convertors: Any, max_body: Any, effective: Any = None) -> None:
        if convertors or max_body is not None or not isinstance(path, str):
            return
        for method in methods or ():
            table.setdefault((method, path), _Route(route, handler, effective))

    def walk(routes: list[Any]) -> None:
        for rt in routes:
            if isinstance(rt, APIRoute):
                add(rt.path, rt.methods, rt, rt.get_route_handler(), rt.param_convertors, getattr(rt, "max_body_size", None))
            elif isinstance(rt, _IncludedRouter):
                for ctx in rt.effective_candidates():
                    if isinstance(ctx, _IncludedRouter):
                        walk([ctx])
                    elif isinstance(getattr(ctx, "original_route", None), APIRoute):
                        token = _effective_route_context_var.set(ctx)  # the handler with the inclusion's dependencies
                        try:
                            handler = ctx.original_route.get_route_handler()  # type: ignore[attr-defined]
                        finally:
                            _effective_route_context_var.reset(token)
                        add(ctx.path, ctx.methods, ctx.original_route, handler, ctx.param_convertors, ctx.max_body_size, ctx)

    try:
        walk(list(app.router.routes))
    except (AttributeError, TypeError):
        return None
    return table


def _lookup(handlers: dict[Any, Any], exc: Exception) -> Any:
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


class DirectApp:
    """A served app, callable in-process without ASGI (`request`), and still an ASGI app (`__call__`) for the rest."""

    def __init__(self, served: Any) -> None:
        from fastapi import FastAPI

        from gymctl.server.admission import AdmissionMiddleware
        from gymctl.server.auth import BearerAuthMiddleware
        from gymctl.server.limits import BodyLimitMiddleware
        from gymctl.server.logformat import RequestIdMiddleware
        from gymctl.server.metrics import MetricsMiddleware

        _bind()
        self.served = served
        self.admission: Any = None
        self.max_bytes: int | None = None
        self.body_limit: Any = None
        self.auth: Any = None
        self.metrics: Any = None
        self.request_ids: Any = None
        self.app: Any = None
        self.table: dict[tuple[str, str], _Route] | None = None
        self.error_handler: Any = None
        self.status_handlers: dict[int, Any] = {}
        self.exc_handlers: dict[Any, Any] = {}
        layer = served
        while True:  # the wrappers gymctl serves, outermost first; anything unknown: the full ASGI path for every call
            if isinstance(layer, AdmissionMiddleware) and self.admission is None and self.body_limit is None and self.auth is None:
                self.admission = layer
            elif isinstance(layer, BodyLimitMiddleware) and self.body_limit is None and self.auth is None:
                self.body_limit = layer
            elif isinstance(layer, BearerAuthMiddleware) and self.auth is None:
                self.auth = layer
            else:
                break
            layer = layer.app
        if not isinstance(layer, FastAPI):
            return
        for m in layer.user_middleware:
            cls: Any = m.cls
            if cls is MetricsMiddleware and self.metrics is None:
                self.metrics = m.kwargs["metrics"]
            elif cls is RequestIdMiddleware and self.request_ids is None:
                self.request_ids = RequestIdMiddleware(None, str(m.kwargs["instance"]))
            else:
                return  # middleware of the server's own: it must see every call
        telemetry = getattr(layer, "_native_telemetry", None)
        if getattr(layer, "max_body_size", None) is not None or layer.root_path or (telemetry is not None and telemetry.enabled()):
            return  # FastAPI's own per-request layers are in use: they must see every call
        # As Starlette splits them: 500 / Exception for its server error middleware, the rest for its exception middleware.
        handlers = dict(layer.exception_handlers)
        self.error_handler = handlers.pop(500, None) or handlers.pop(Exception, None)
        handlers.pop(Exception, None)
        self.status_handlers = {k: v for k, v in handlers.items() if isinstance(k, int)}
        self.exc_handlers = {k: v for k, v in handlers.items() if not isinstance(k, int)}
        self.app = layer

    def __repr__(self) -> str:
        return f"DirectApp({self.served!r})"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """As served over a socket: a whole request with a declared length to a checked static route goes straight to the
        route (after the same admission, limit and auth checks); anything else, and a busy server's 503, through the
        served stack, which also checks each route against FastAPI's matching the first time."""
        entry = self._entry(scope["method"], scope["path"]) if scope["type"] == "http" and not scope["query_string"] else None
        if entry is None or not entry.checked:
            await self.served(scope, receive, send)
            if entry is not None:
                self._learn(entry, scope)
            return
        size = -1
        headers = []
        for name, value in scope["headers"]:
            if name == b"content-length":
                size = int(value) if value.isdigit() else -1
            else:
                headers.append((name, value))
        admission = self.admission
        if size < 0 or (self.body_limit is not None and size > self.body_limit.max_bytes) or (
                admission is not None and admission.in_flight >= admission.limit):
            await self.served(scope, receive, send)  # chunked, too large, busy: the served middleware answers
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body was whole
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, out, data = await self.request(scope["method"], scope["path"], b"".join(chunks), headers, client=scope.get("client"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})

    def _entry(self, method: str, path: str) -> _Route | None:
        if self.app is None:
            return None
        if self.table is None:
            self.table = _static_routes(self.app) or {}
        return self.table.get((method, path))

    def _learn(self, entry: _Route, scope: dict[str, Any]) -> None:
        """After a call through the full stack: did FastAPI pick the table's route? Then later calls skip the stack."""
        if entry.checked or "route" not in scope:
            return
        if scope["route"] is entry.route:
            entry.checked = True
        else:
            assert self.table is not None
            self.table[(scope["method"], scope["path"])] = None  # type: ignore[assignment]

    async def request(self, method: str, path: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
                      query: bytes = b"", *, client: tuple[str, int] | None = None) -> Reply:
        """(status, headers, body) as the served app would answer this request over HTTP (`headers` without content-length)."""
        app = self.app
        if app is None:
            return await _asgi(self.served, method, path, body, headers, query)
        headers = headers or []
        admission = self.admission
        counted = admission is not None and path not in _always_admitted()
        if counted:
            if admission.in_flight >= admission.limit:
                admission.rejected += 1
                return admission._start["status"], admission._start["headers"], admission._body["body"]
            admission.in_flight += 1
            admission.admitted += 1
            if admission.in_flight > admission.peak:
                admission.peak = admission.in_flight
        peer = client or _CLIENT
        try:
            if self.body_limit is not None and len(body) > self.body_limit.max_bytes:
                return await _asgi(self.body_limit, method, path, body, headers, query, scope=_scope(method, path, body, headers, query, peer))  # its 413
            auth = self.auth
            if auth is not None and path not in auth.exempt and not (auth.trusted is not None and auth.trusted.trusts(peer[0])):
                header = next((v for k, v in headers if k == b"authorization"), None)
                if auth.check(header) is not None:
                    return await _asgi(auth, method, path, body, headers, query, scope=_scope(method, path, body, headers, query, peer))  # its 401
            entry = self._entry(method, path)
            if entry is None or not entry.checked or query:
                status, out, data, scope = await _full(app, method, path, body, headers, query, peer)
                if entry is not None:
                    self._learn(entry, scope)  # FastAPI picked another route than the table: this key always takes the full path
                return status, out, data
            return await self._route(entry, method, path, body, headers, peer)
        finally:
            if counted:
                admission.in_flight -= 1

    async def _route(self, entry: _Route, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], peer: tuple[str, int]) -> Reply:
        """The route's answer, counted as the metrics middleware counts it (one coroutine: each is one more frame
        resumed at every await of the call)."""
        m = self.metrics
        started = time.perf_counter()
        reply: Reply = _PLAIN_500
        token = None
        if self.request_ids is not None:
            token = self.request_ids.enter(headers)
        if m is not None:
            m.inflight += 1
        app = self.app
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        scope = _scope(method, path, body, headers, b"", peer)
        scope.update(app=app, router=app.router, route=entry.route, endpoint=entry.route.endpoint, path_params={})
        request = Request(scope, receive)
        try:
            if entry.endpoint is not None:  # what FastAPI's handler does for an endpoint that takes only the Request
                response = await entry.endpoint(**{entry.request_param: request})
                if not isinstance(response, Response):
                    response = JSONResponse(jsonable_encoder(response))
                elif response.background is None and type(response).__call__ is Response.__call__:
                    reply = (response.status_code, response.raw_headers, response.body)  # _rendered's plain case, no coroutine
                    return reply
            else:
                async with AsyncExitStack() as files:
                    scope["fastapi_middleware_astack"] = files
                    async with AsyncExitStack() as inner:
                        scope["fastapi_inner_astack"] = inner
                        async with AsyncExitStack() as function:
                            scope["fastapi_function_astack"] = function
                            response = await entry.handler(request)
                        reply = await _rendered(response, scope, receive)
                        return reply
            reply = await _rendered(response, scope, receive)
            return reply
        except Exception as exc:  # noqa: BLE001 -- as Starlette's exception middleware: the app's handlers, else a 500
            handler = None
            if isinstance(exc, HTTPException):
                handler = self.status_handlers.get(exc.status_code)
            if handler is None:
                handler = _lookup(self.exc_handlers, exc)
            if handler is None:
                reply = await self._server_error(exc, request, scope, receive, method, path)
                return reply
            response = await _call_handler(handler, request, exc)
            exc.__traceback__ = None  # as Starlette: a reused exception instance does not pile up tracebacks
            reply = await _rendered(response, scope, receive)
            return reply
        finally:
            if m is not None:
                m.inflight -= 1
                m.observe(entry.route.path, method, reply[0], time.perf_counter() - started)
                if m.body_of is not None and path in m.body_paths:
                    m.body_of(path, reply[0], reply[2])
            if token is not None:
                self.request_ids.leave(token)

    async def _server_error(self, exc: Exception, request: Any, scope: dict[str, Any], receive: Any, method: str, path: str) -> Reply:
        """What Starlette's ServerErrorMiddleware answers (the app's 500 / Exception handler, else a plain 500); logged as uvicorn would."""
        log.error("%s %s failed in-process", method, path, exc_info=exc)
        handler = self.error_handler
        if handler is None:
            return _PLAIN_500
        try:
            return await _rendered(await _call_handler(handler, request, exc), scope, receive)
        except Exception:  # noqa: BLE001 -- a failing 500 handler: the plain 500, as Starlette sends
            return _PLAIN_500


_ADMITTED: frozenset[str] | None = None


def _always_admitted() -> frozenset[str]:
    global _ADMITTED
    if _ADMITTED is None:
        from gymctl.server.admission import ALWAYS_ADMITTED

        _ADMITTED = ALWAYS_ADMITTED
    return _ADMITTED


async def _call_handler(handler: Any, request: Any, exc: Exception) -> Any:
    import inspect

    if inspect.iscoroutinefunction(handler):
        return await handler(request, exc)
    from fastapi.concurrency import run_in_threadpool

    return await run_in_threadpool(handler, request, exc)


async def _rendered(response: Any, scope: dict[str, Any], receive: Any) -> Reply:
    """A handler's Response as (status, headers, body): read off a plain Response, sent through ASGI for any other kind."""
    if type(response).__call__ is Response.__call__:
        if response.background is not None:
            await response.background()
        return response.status_code, response.raw_headers, response.body
    status = 500
    out: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out
        if message["type"] == "http.response.start":
            status, out = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await response(scope, receive, send)
    return status, out, b"".join(chunks)


def _scope(method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], query: bytes, peer: tuple[str, int] = _CLIENT) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode()), *headers],
        "client": peer,
        "server": _CLIENT,
        "state": {},
    }


async def _asgi(app: Any, *args: Any, **kwargs: Any) -> Reply:
    """The full ASGI path (gymctl.server.asgi_dispatch), for the calls that cannot go straight to the route."""
    from gymctl.server.asgi_dispatch import asgi_request

    return await asgi_request(app, *args, **kwargs)


async def _full(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]],
                query: bytes, peer: tuple[str, int]) -> tuple[int, list[tuple[bytes, bytes]], bytes, dict[str, Any]]:
    """The full ASGI path through `app`; also the scope, so the caller sees the route FastAPI picked."""
    scope = _scope(method, path, body, headers, query, peer)
    status, out, data = await _asgi(app, method, path, body, headers, query, scope=scope)
    return status, out, data, scope
