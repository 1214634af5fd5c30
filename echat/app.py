"""The application factory: wiring only. Nothing runs at import.

`create_app(config)` builds a QuartTrio app with the REST and WebSocket blueprints, the one
error handler, and the shared services (store, hub, password hasher, login guard) as attributes.
The store is opened by whoever runs the app (`async with app.storage():`, see echat.server),
so its lifetime is a plain `async with` block that ends cleanly even when the server is
cancelled, not a framework lifespan hook.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart import Response, current_app
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from echat import jsonio, logs, metrics
from echat.config import Config
from echat.errors import BY_STATUS, EchatError, InternalError, error_body
from echat.hub import CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, Hub
from echat.metrics import Metrics
from echat.models import RoomEvent, RoomLeft, StoredMessage
from echat.passwords import Passwords
from echat.proxies import TrustedProxies, parse_networks
from echat.ratelimit import LoginGuard
from echat.sessions import SessionCache
from echat.store import Store, open_store
from echat.websocket import WebSocket

log = logging.getLogger("echat")


class InFlight:
    """Counts the requests and sockets being handled, so shutdown can wait for exactly those."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters = trio.lowlevel.ParkingLot()

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1
        if self.count == 0:
            self._waiters.unpark_all()

    async def wait_idle(self) -> None:
        while self.count:
            await self._waiters.park()


class EchatApp(QuartTrio):
    echat_config: Config
    store: Store
    hub: Hub
    passwords: Passwords
    login_guard: LoginGuard
    sessions: SessionCache
    in_flight: InFlight
    metrics: Metrics
    trusted_proxies: TrustedProxies
    openapi_json: str

    async def asgi_app(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            return await super().asgi_app(scope, receive, send)
        # First, so that everything after it sees the client, not the proxy.
        self.trusted_proxies.rewrite(cast(dict, scope))
        access = logs.AccessRecorder(cast(dict, scope))
        send = access.watch(send)
        if scope["type"] == "http":
            send = _shield_response_end(send)
        try:
            with self.in_flight:
                if scope["type"] == "websocket":
                    await self.websocket_app(cast(dict, scope), receive, send)
                else:
                    await super().asgi_app(scope, receive, send)
        finally:
            access.write()

    async def websocket_app(self, scope: dict, receive: ASGIReceiveCallable,
                            send: ASGISendCallable) -> None:
        """The room socket, served below Quart (echat.websocket says why); any other
        WebSocket path goes to Quart, which refuses it."""
        # Imported here: rooms_ws builds on echat.api, which builds on this module.
        from echat.rooms_ws import chat_room, serve_chat

        room_id = chat_room(scope["path"])
        if room_id is None:
            await super().asgi_app(scope, receive, send)
        else:
            await serve_chat(self, WebSocket(scope, receive, send), room_id)

    def announce(self, result: object, origin: object) -> None:
        """The store's commit listener: runs in commit order, so rooms are fed in id order.

        Each frame is encoded once, whatever the number of receivers. New messages also wake
        the held feed requests of the room's members; events (`RoomEvent`: edits, deletions,
        read markers) go to the sockets that asked for their kind.
        """
        if isinstance(result, StoredMessage) and result.created:
            message = result.message
            self.metrics.messages_stored += 1
            self.hub.publish(message.room_id, message.encoded(), skip=origin)
            self.hub.feed_message(message, result.members)
        elif isinstance(result, RoomEvent):
            self.hub.publish_event(result.room_id, result.kind, jsonio.dumps(result.to_json()))
        elif isinstance(result, RoomLeft):
            self.hub.close_member(result.room_id, result.user_id, CLOSE_NORMAL)

    @asynccontextmanager
    async def storage(self) -> AsyncIterator[Store]:
        """Open the database for the duration of the block; the app serves only inside it."""
        async with open_store(self.echat_config.db, on_commit=self.announce) as store:
            self.store = store
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.close_ended_sessions)
                    yield store
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The watcher does not fail, so this is the block's own error: raised as
                # itself, as callers expect (`except OSError` in echat.cli).
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise

    async def close_ended_sessions(self) -> None:
        """Every `session_check_interval` seconds, close (1008) the sockets whose session has
        ended in the database without this process knowing: `echat users disable` or
        `passwd` run by the operator. A logout here closes them at once instead."""
        while True:
            await trio.sleep(self.echat_config.session_check_interval)
            open_sessions = self.hub.session_keys()
            if not open_sessions:
                continue
            try:
                live = await self.store.live_sessions(open_sessions)
            except Exception:
                log.exception("checking the sessions of open sockets failed")
                continue
            for key in open_sessions:
                if key not in live:
                    self.sessions.drop(key)
                    self.hub.close_session(key, CLOSE_POLICY)

    async def close_connections(self) -> None:
        """First step of shutdown: close every socket with 1001 once what they sent is stored,
        and answer the held feed requests; then wait until every request and socket handler
        has finished (callers bound this)."""
        self.hub.close_all(CLOSE_GOING_AWAY)
        await self.store.flush()
        await self.in_flight.wait_idle()


def _shield_response_end(send: ASGISendCallable) -> ASGISendCallable:
    """`send` with the last message of an HTTP response shielded from cancellation.

    hypercorn starts a connection's keep-alive timer inside that send, in the request's task,
    just after telling the app the request is over; quart-trio then cancels that task, and trio
    leaves a task started from a cancelled scope there (`TaskStatus.started`), so the timer
    died at once and idle keep-alive connections were never closed, neither after
    keep_alive_timeout nor at shutdown. The shielded send is short (hypercorn already shields
    the socket write).
    """

    async def send_end_shielded(message: ASGISendEvent) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return send_end_shielded


def current_echat() -> EchatApp:
    return cast(EchatApp, current_app)


def create_app(config: Config | None = None) -> EchatApp:
    from echat.api import api
    from echat.openapi import document
    from echat.web import web

    config = config or Config()
    # No automatic /static route: echat.web serves the client's files with its own headers.
    app = EchatApp("echat", static_folder=None)
    app.echat_config = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    # No automatic OPTIONS answers (an empty text/html 200): every answer of the API is JSON,
    # and no route needs CORS preflight (the web client is served from the same origin).
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.hub = Hub(config.outbox_frames)
    app.passwords = Passwords(fast=config.fast_hashing)
    app.login_guard = LoginGuard(config.login_failures)
    app.sessions = SessionCache(recheck_after=config.session_check_interval)
    app.in_flight = InFlight()
    app.metrics = Metrics()
    app.trusted_proxies = TrustedProxies(parse_networks(config.trusted_proxies))
    app.openapi_json = jsonio.dumps(document(config))
    app.register_blueprint(api)
    app.register_blueprint(web)
    app.register_error_handler(Exception, render_error)
    if config.metrics:
        metrics.install(app)
    return app


async def render_error(error: Exception) -> Response:
    """Every failure becomes `{"error": {"code": ...}}` with the contract's status."""
    headers: dict[str, str] = {}
    if isinstance(error, EchatError):
        status, body, headers = error.status, error.body(), error.headers
    elif isinstance(error, HTTPException) and error.code is not None and error.code < 500:
        known = BY_STATUS.get(error.code)
        status = error.code
        body = error_body(known.code if known else _snake(error.name))
        if error.code == 405:
            allow = dict(error.get_headers()).get("Allow")
            if allow:
                headers["Allow"] = allow
    else:
        log.error("unhandled error", exc_info=error)
        status, body = InternalError.status, InternalError().body()
    return json_response(body, status, headers)


def json_response(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(value), status=status, headers=headers,
                    content_type=jsonio.CONTENT_TYPE)


def _snake(name: str) -> str:
    return "_".join(name.lower().split())
