"""A fake graph.facebook.com for the calling endpoint POST /<version>/<PNID>/calls.

It validates requests the way Meta documents (whatsapp-calling.md §4): Bearer
token, JSON body, messaging_product "whatsapp", lower-case action, call_id,
session {sdp_type "answer", sdp with CRLF lines and a fingerprint} for
pre_accept/accept, accept's SDP equal to pre_accept's, known call ids. Errors use
Meta's shape {"error": {message, type, code, error_data{details}, fbtrace_id}}.

Every request is recorded (`requests`). Tests register the calls Meta "knows"
with `expect_call` and can attach hooks that play the user's side: `on_answer`
gets the answer SDP on pre_accept (or accept when pre_accept was skipped),
`on_end` runs on terminate/reject. `connect` (business-initiated calls) assigns a
call id, replies with calls[0].id and hands the offer to `on_outbound_connect`.
Failures can be scripted per action with `fail`.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

ACTIONS = ("connect", "pre_accept", "accept", "reject", "terminate")
PATH_RE = re.compile(r"^/(v\d+\.\d+)/([^/]+)/calls$")

AnswerHook = Callable[[str, str], Awaitable[None]]          # (call_id, answer sdp)
EndHook = Callable[[str, str], Awaitable[None]]             # (call_id, action)
OutboundHook = Callable[[str, dict], Awaitable[None]]       # (call_id, request body)


@dataclass
class GraphRequest:
    """One request as received, with the reply we gave."""
    path: str
    authorization: str
    raw_body: bytes
    body: Any
    action: str
    call_id: str
    status: int = 0
    response: dict = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def sdp(self) -> str:
        session = self.body.get("session") if isinstance(self.body, dict) else None
        return session.get("sdp", "") if isinstance(session, dict) else ""


@dataclass
class ScriptedFailure:
    action: str
    http_status: int
    code: int
    message: str
    details: str
    call_id: Optional[str]
    remaining: int


@dataclass
class KnownCall:
    call_id: str
    on_answer: Optional[AnswerHook] = None
    on_end: Optional[EndHook] = None
    pre_accept_sdp: Optional[str] = None
    state: str = "ringing"      # ringing -> pre_accepted -> accepted -> ended


class GraphApiError(Exception):
    def __init__(self, http_status: int, code: int, message: str, details: str = "",
                 error_type: str = "OAuthException"):
        super().__init__(message)
        self.http_status, self.code, self.message = http_status, code, message
        self.details, self.error_type = details, error_type

    def body(self) -> dict:
        error: dict[str, Any] = {"message": self.message, "type": self.error_type,
                                 "code": self.code, "fbtrace_id": secrets.token_urlsafe(12)}
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        return {"error": error}


def invalid_parameter(details: str) -> GraphApiError:
    return GraphApiError(400, 100, "(#100) Invalid parameter", details)


def check_answer_sdp(sdp: Any) -> None:
    """The SDP checks Meta applies to pre_accept/accept (as far as documented)."""
    if not isinstance(sdp, str) or not sdp:
        raise invalid_parameter("session.sdp is required")
    if not sdp.startswith("v=0\r\n"):
        raise invalid_parameter("SDP must start with v=0 and use CRLF line endings")
    if "\\r\\n" in sdp:
        raise invalid_parameter("SDP contains escaped line endings")
    if re.search(r"(?<!\r)\n", sdp) or not sdp.endswith("\r\n"):
        raise invalid_parameter("SDP lines must end with CRLF")
    if "\r\na=fingerprint:" not in sdp:
        raise invalid_parameter("No fingerprint found in SDP")
    if sdp.count("\r\nm=") != 1:
        raise invalid_parameter("SDP must contain exactly one media section")


class FakeGraphApi:
    """An aiohttp server on 127.0.0.1 playing Meta's Graph API calls endpoint."""

    def __init__(self, access_token: str, phone_number_id: str):
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.requests: list[GraphRequest] = []
        self.calls: dict[str, KnownCall] = {}
        self.failures: list[ScriptedFailure] = []
        self.on_outbound_connect: Optional[OutboundHook] = None
        # Hold connect's HTTP reply until on_outbound_connect finished (Meta's
        # answer webhook overtaking the reply that carries the call id).
        self.hold_connect_reply = False
        self._connect_hook: Optional[asyncio.Task] = None
        self._changed = asyncio.Condition()
        self._hook_tasks: set[asyncio.Task] = set()
        self.hook_errors: list[BaseException] = []
        self._runner: Optional[web.AppRunner] = None
        self._call_numbers = itertools.count(1)
        self.port = 0

    # ---- lifecycle --------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._hook_tasks):
            task.cancel()
        await asyncio.gather(*self._hook_tasks, return_exceptions=True)
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    def base_url(self, version: str = "v23.0") -> str:
        """The value for WHATSAPP_GRAPH_URL."""
        return f"http://127.0.0.1:{self.port}/{version}"

    # ---- test control -----------------------------------------------------
    def expect_call(self, call_id: str, *, on_answer: Optional[AnswerHook] = None,
                    on_end: Optional[EndHook] = None) -> None:
        """Makes `call_id` known, as Meta knows the calls it sent webhooks for."""
        self.calls[call_id] = KnownCall(call_id, on_answer, on_end)

    def fail(self, action: str, *, http_status: int = 400, code: int = 100,
             message: str = "(#100) Invalid parameter", details: str = "",
             call_id: Optional[str] = None, times: int = 1) -> None:
        """Makes the next `times` requests with `action` (and `call_id`) fail."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        self.failures.append(ScriptedFailure(action, http_status, code, message, details,
                                             call_id, times))

    def requests_for(self, call_id: str, action: Optional[str] = None) -> list[GraphRequest]:
        return [r for r in self.requests
                if r.call_id == call_id and (action is None or r.action == action)]

    def actions(self, call_id: str) -> list[str]:
        """The actions that succeeded for a call, in order."""
        return [r.action for r in self.requests_for(call_id) if r.ok]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Waits until `predicate()` is true after some request; False on timeout."""
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)
        try:
            await asyncio.wait_for(wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return predicate()

    async def wait_for_action(self, call_id: str, action: str, timeout: float) -> Optional[GraphRequest]:
        """The first successful `action` request for `call_id`, or None on timeout."""
        def found() -> bool:
            return any(r.ok for r in self.requests_for(call_id, action))
        if not await self.wait_for(found, timeout):
            return None
        return next(r for r in self.requests_for(call_id, action) if r.ok)

    # ---- request handling -------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        record = GraphRequest(path=request.path,
                              authorization=request.headers.get("Authorization", ""),
                              raw_body=raw, body=None, action="", call_id="")
        try:
            record.body = self._parse(request, raw)
            record.action = record.body.get("action", "") if isinstance(record.body.get("action"), str) else ""
            record.call_id = record.body.get("call_id", "") if isinstance(record.body.get("call_id"), str) else ""
            status, response = 200, self._dispatch(record)
            if record.action == "connect" and self.hold_connect_reply and self._connect_hook:
                await asyncio.wait([self._connect_hook])
        except GraphApiError as error:
            status, response = error.http_status, error.body()
        record.status, record.response = status, response
        self.requests.append(record)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(response, status=status)

    def _parse(self, request: web.Request, raw: bytes) -> dict:
        if request.method != "POST":
            raise GraphApiError(400, 100, "Unsupported get request.", error_type="GraphMethodException")
        match = PATH_RE.match(request.path)
        if not match:
            raise GraphApiError(400, 2500, "Unknown path components: " + request.path)
        authorization = request.headers.get("Authorization", "")
        if authorization != f"Bearer {self.access_token}":
            raise GraphApiError(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if match.group(2) != self.phone_number_id:
            raise GraphApiError(400, 100,
                                f"Unsupported post request. Object with ID '{match.group(2)}' does "
                                "not exist, cannot be loaded due to missing permissions, or does "
                                "not support this operation.", error_type="GraphMethodException")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise invalid_parameter("request body is not valid JSON")
        if not isinstance(body, dict):
            raise invalid_parameter("request body must be a JSON object")
        return body

    def _dispatch(self, record: GraphRequest) -> dict:
        body = record.body
        if body.get("messaging_product") != "whatsapp":
            raise GraphApiError(400, 100, "(#100) The parameter messaging_product is required.")
        action = body.get("action")
        if not isinstance(action, str) or action not in ACTIONS:
            raise invalid_parameter(f"action must be one of {', '.join(ACTIONS)} (lower case), "
                                    f"got {action!r}")
        self._raise_scripted_failure(action, record.call_id)
        if action == "connect":
            return self._connect(body)
        call = self._known_call(body)
        if action in ("pre_accept", "accept"):
            self._answer(call, action, body)
        else:
            if call.state == "ended":
                raise invalid_parameter(f"call {call.call_id} has already ended")
            if action == "reject" and call.state == "accepted":
                raise invalid_parameter("an accepted call cannot be rejected; use terminate")
            call.state = "ended"
            if call.on_end:
                self._run_hook(call.on_end(call.call_id, action))
        return {"messaging_product": "whatsapp", "success": True}

    def _raise_scripted_failure(self, action: str, call_id: str) -> None:
        for failure in self.failures:
            if failure.action == action and failure.remaining > 0 and \
                    failure.call_id in (None, call_id):
                failure.remaining -= 1
                raise GraphApiError(failure.http_status, failure.code, failure.message,
                                    failure.details)

    def _known_call(self, body: dict) -> KnownCall:
        call_id = body.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise GraphApiError(400, 100, "(#100) The parameter call_id is required.")
        if call_id not in self.calls:
            raise invalid_parameter(f"Call id {call_id} is not valid or not found")
        return self.calls[call_id]

    def _answer(self, call: KnownCall, action: str, body: dict) -> None:
        session = body.get("session")
        if not isinstance(session, dict):
            raise GraphApiError(400, 100, "(#100) The parameter session is required.")
        if session.get("sdp_type") != "answer":
            raise invalid_parameter(f"session.sdp_type must be \"answer\", got {session.get('sdp_type')!r}")
        sdp = session.get("sdp")
        check_answer_sdp(sdp)
        if call.state == "ended":
            raise invalid_parameter(f"call {call.call_id} has already ended")
        if action == "pre_accept":
            if call.state != "ringing":
                raise invalid_parameter(f"pre_accept not allowed in state {call.state}")
            call.pre_accept_sdp, call.state = sdp, "pre_accepted"
            needs_answer = True
        else:
            if call.state == "accepted":
                raise invalid_parameter("call already accepted")
            if call.pre_accept_sdp is not None and sdp != call.pre_accept_sdp:
                raise invalid_parameter("accept SDP differs from the pre_accept SDP")
            needs_answer = call.pre_accept_sdp is None
            call.state = "accepted"
        if needs_answer and call.on_answer:
            self._run_hook(call.on_answer(call.call_id, sdp))

    def _connect(self, body: dict) -> dict:
        if not isinstance(body.get("to"), str) or not body["to"]:
            raise GraphApiError(400, 100, "(#100) The parameter to is required.")
        session = body.get("session")
        if not isinstance(session, dict) or session.get("sdp_type") != "offer":
            raise invalid_parameter("connect needs session {sdp_type: \"offer\", sdp}")
        check_answer_sdp(session.get("sdp"))
        call_id = f"wacid.fake{next(self._call_numbers):06d}{secrets.token_hex(8)}"
        self.calls[call_id] = KnownCall(call_id, state="outbound")
        if self.on_outbound_connect:
            self._connect_hook = self._run_hook(self.on_outbound_connect(call_id, body))
        return {"messaging_product": "whatsapp", "calls": [{"id": call_id}]}

    def _run_hook(self, coroutine: Awaitable[None]) -> asyncio.Task:
        """Hooks run after the HTTP reply, as Meta's side reacts asynchronously."""
        task = asyncio.ensure_future(coroutine)
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_done)
        return task

    def _hook_done(self, task: asyncio.Task) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.hook_errors.append(task.exception())
