"""Meta-shaped WhatsApp call webhooks (field "calls"), their signature and an
async sender.

Shapes follow whatsapp-calling.md §3: the envelope object/entry/changes/value,
contacts [{profile{name}, wa_id}], calls[] items with string timestamps, and
statuses[] items of type "call". Payloads are plain dicts; `encode` turns them
into the exact bytes that get signed and sent.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Iterable, Optional

import aiohttp

DEFAULT_WABA_ID = "102290129340398"
DEFAULT_DISPLAY_NUMBER = "15550783881"
DEFAULT_BUSINESS_NUMBER = "15550783881"


def _timestamp(value: Optional[float]) -> str:
    """Meta sends UNIX seconds as a string."""
    return str(int(time.time() if value is None else value))


def envelope(phone_number_id: str, value_items: dict[str, Any], *,
             waba_id: str = DEFAULT_WABA_ID,
             display_phone_number: str = DEFAULT_DISPLAY_NUMBER) -> dict[str, Any]:
    """Wraps `value` items (calls, contacts, statuses, errors) in Meta's envelope."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number,
                     "phone_number_id": phone_number_id},
    }
    value.update(value_items)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"field": "calls", "value": value}]}],
    }


def contact(name: str, wa_id: str) -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id}


def connect_call(call_id: str, offer_sdp: str, caller_number: str, *,
                 business_number: str = DEFAULT_BUSINESS_NUMBER,
                 timestamp: Optional[float] = None) -> dict[str, Any]:
    """A user-initiated connect item carrying the caller's offer."""
    return {
        "id": call_id,
        "from": caller_number,
        "to": business_number,
        "event": "connect",
        "timestamp": _timestamp(timestamp),
        "direction": "USER_INITIATED",
        "session": {"sdp": offer_sdp, "sdp_type": "offer"},
    }


def terminate_call(call_id: str, caller_number: str, *, status: str = "COMPLETED",
                   business_number: str = DEFAULT_BUSINESS_NUMBER,
                   start_time: Optional[float] = None, end_time: Optional[float] = None,
                   duration: Optional[int] = None, errors: Optional[list[dict]] = None,
                   timestamp: Optional[float] = None) -> dict[str, Any]:
    """A terminate item; start/end/duration only when the call was picked up."""
    item: dict[str, Any] = {
        "id": call_id,
        "from": caller_number,
        "to": business_number,
        "event": "terminate",
        "direction": "USER_INITIATED",
        "timestamp": _timestamp(timestamp),
        "status": status,
    }
    if start_time is not None:
        item["start_time"] = _timestamp(start_time)
    if end_time is not None:
        item["end_time"] = _timestamp(end_time)
    if duration is not None:
        item["duration"] = int(duration)
    if errors:
        item["errors"] = errors
    return item


def call_error(code: int, message: str, details: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["error_data"] = {"details": details}
    return error


def connect_webhook(phone_number_id: str, call_id: str, offer_sdp: str, *,
                    caller_name: str, caller_number: str,
                    timestamp: Optional[float] = None) -> dict[str, Any]:
    """The webhook Meta sends when a WhatsApp user calls the business."""
    return envelope(phone_number_id, {
        "contacts": [contact(caller_name, caller_number)],
        "calls": [connect_call(call_id, offer_sdp, caller_number, timestamp=timestamp)],
    })


def answer_webhook(phone_number_id: str, call_id: str, answer_sdp: str, *, callee_number: str,
                   biz_opaque_callback_data: Optional[str] = None,
                   business_number: str = DEFAULT_BUSINESS_NUMBER) -> dict[str, Any]:
    """The connect webhook Meta sends with the callee's answer to a business-initiated call."""
    item: dict[str, Any] = {
        "id": call_id,
        "from": business_number,
        "to": callee_number,
        "event": "connect",
        "timestamp": _timestamp(None),
        "direction": "BUSINESS_INITIATED",
        "session": {"sdp": answer_sdp, "sdp_type": "answer"},
    }
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    return envelope(phone_number_id, {"calls": [item]})


def terminate_webhook(phone_number_id: str, call_id: str, *, caller_name: str,
                      caller_number: str, **terminate_fields: Any) -> dict[str, Any]:
    """The webhook Meta sends when a call ends (user hang-up, failure, not answered)."""
    return envelope(phone_number_id, {
        "contacts": [contact(caller_name, caller_number)],
        "calls": [terminate_call(call_id, caller_number, **terminate_fields)],
    })


def status_webhook(phone_number_id: str, call_id: str, status: str, recipient_id: str, *,
                   timestamp: Optional[float] = None,
                   biz_opaque_callback_data: Optional[str] = None) -> dict[str, Any]:
    """A business-initiated call progress update (RINGING / ACCEPTED / REJECTED)."""
    item: dict[str, Any] = {"id": call_id, "type": "call", "status": status,
                            "timestamp": _timestamp(timestamp), "recipient_id": recipient_id}
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    return envelope(phone_number_id, {"statuses": [item]})


def batch(*payloads: dict[str, Any]) -> dict[str, Any]:
    """Merges several single-entry payloads into one POST (Meta batches updates)."""
    merged = json.loads(json.dumps(payloads[0]))
    for payload in payloads[1:]:
        merged["entry"].extend(json.loads(json.dumps(payload["entry"])))
    return merged


def encode(payload: dict[str, Any]) -> bytes:
    """The raw body bytes as Meta would send them (compact JSON, UTF-8)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 header value for `body`."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


class WebhookSender:
    """POSTs raw webhook bodies to the server under test, signed like Meta."""

    def __init__(self, url: str, app_secret: str):
        self.url = url
        self.app_secret = app_secret
        self.sent: list[tuple[bytes, int]] = []

    async def post(self, body: bytes | dict, *, signature: Optional[str] = None,
                   sign_body: bool = True, headers: Optional[dict[str, str]] = None) -> int:
        """Sends `body` and returns the HTTP status. `signature` overrides the
        computed header; `sign_body=False` leaves the header out."""
        raw = encode(body) if isinstance(body, dict) else body
        request_headers = {"Content-Type": "application/json"}
        if sign_body:
            request_headers["X-Hub-Signature-256"] = signature or sign(raw, self.app_secret)
        request_headers.update(headers or {})
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(self.url, data=raw, headers=request_headers) as response:
                await response.read()
                self.sent.append((raw, response.status))
                return response.status

    async def post_all(self, bodies: Iterable[bytes | dict]) -> list[int]:
        return [await self.post(body) for body in bodies]
