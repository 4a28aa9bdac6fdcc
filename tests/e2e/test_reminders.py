"""Reminder calls: a due reminder makes voicebridge call the person (Graph
connect with its WebRTC offer), fake Meta's callee answers through a signed
BUSINESS_INITIATED connect webhook, and the reminder's row records the outcome.

Runs against its own database in the cluster of DATABASE_URL (or a throwaway
cluster of its own), so no other test's server ever claims these reminders.
"""
from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Optional

import harness
import test_tools
from fake_meta import webhooks
from fake_meta.caller import Callee
from harness import E2ETestCase

CALL_TIMEOUT = 30          # from a due reminder to its final status
_cluster: Optional[test_tools.PrivateCluster] = None
_server_url = ""
_database_name = f"vb_reminders_{os.getpid()}"
_database_url = ""


def setUpModule() -> None:
    global _cluster, _server_url, _database_url
    _server_url = os.environ.get("DATABASE_URL", "")
    if not _server_url:
        _cluster = test_tools.PrivateCluster()
        _cluster.start()
        _server_url = _cluster.url
    if "/postgres?" not in _server_url:
        raise RuntimeError(f"expected a scripts/postgres.sh URL (.../postgres?host=...), got {_server_url!r}")
    asyncio.run(test_tools.psql(_server_url, f"CREATE DATABASE {_database_name}"))
    _database_url = _server_url.replace("/postgres?", f"/{_database_name}?", 1)


def tearDownModule() -> None:
    if _cluster:
        _cluster.remove()
    else:
        asyncio.run(test_tools.psql(_server_url, f"DROP DATABASE IF EXISTS {_database_name} WITH (FORCE)"))


def random_number() -> str:
    return "1555" + str(random.randint(1_000_000, 9_999_999))


class ReminderCallTestCase(E2ETestCase):
    server_env = {
        "REMINDER_TICK_S": "1",
        "REMINDER_RETRY_BACKOFF_S": "1",
        "REMINDER_MAX_ATTEMPTS": "2",
        "REMINDER_CLAIM_TIMEOUT_S": "5",
    }

    async def asyncSetUp(self) -> None:
        self.server_env = dict(self.server_env, DATABASE_URL=_database_url)
        self.callees: list[Callee] = []
        await super().asyncSetUp()

    async def asyncTearDown(self) -> None:
        for callee in self.callees:
            await callee.hang_up()
        await super().asyncTearDown()

    async def sql(self, statement: str, *params: str) -> list[list[str]]:
        return await test_tools.psql(_database_url, statement, *params)

    async def add_reminder(self, number: str, text: str) -> str:
        """A reminder due now, set an hour ago."""
        rows = await self.sql(
            "INSERT INTO reminders (phone_number, text, remind_at, created_at)"
            " VALUES (:'p1', :'p2', now() - interval '1 second', now() - interval '1 hour')"
            " RETURNING id", number, text)
        return rows[0][0]

    async def reminder(self, reminder_id: str) -> dict[str, str]:
        rows = await self.sql("SELECT status, attempts, coalesce(last_error, ''), coalesce(call_id, '')"
                              " FROM reminders WHERE id = :'p1'", reminder_id)
        status, attempts, last_error, call_id = rows[0]
        return {"status": status, "attempts": attempts, "last_error": last_error, "call_id": call_id}

    async def wait_for_status(self, reminder_id: str, status: str, timeout: float = CALL_TIMEOUT) -> dict:
        row: dict = {}

        async def reached() -> bool:
            nonlocal row
            row = await self.reminder(reminder_id)
            return row["status"] == status
        await self.wait_until(reached, timeout, f"reminder {reminder_id} to be {status} (last: {row})")
        return row

    def answering_callee(self, number: str) -> Callee:
        """Fake Meta rings `number`, whose phone answers the business's offer."""
        callee = Callee(number)
        self.callees.append(callee)

        async def on_connect(call_id: str, body: dict) -> None:
            self.assertEqual(body["to"], number)
            answer = await callee.answer(body["session"]["sdp"])
            status = await self.h.webhook.post(webhooks.answer_webhook(
                harness.PHONE_NUMBER_ID, call_id, answer, callee_number=number,
                biz_opaque_callback_data=body.get("biz_opaque_callback_data")))
            self.assertEqual(status, 200)
        self.h.graph.on_outbound_connect = on_connect
        return callee

    async def assert_delivered(self, number: str, text: str) -> None:
        callee = self.answering_callee(number)
        reminder_id = await self.add_reminder(number, text)
        row = await self.wait_for_status(reminder_id, "delivered")
        self.assertEqual(row["attempts"], "1")
        self.assertTrue(row["call_id"].startswith("wacid.fake"), row)
        self.assertTrue(await asyncio.wait_for(callee.connected.wait(), 10))

        # The AI was told why it calls, and spoke first: the callee hears it.
        session = None

        async def session_started() -> bool:
            nonlocal session
            matches = [s for s in await self.h.sessions() if text in (s.get("instructions") or "")]
            session = matches[-1] if matches else None
            return bool(session) and session["responses_started"] >= 1
        await self.wait_until(session_started, 15, "the AI's first response")
        self.assertIn("deliver a reminder", session["instructions"])
        await self.wait_until(lambda: callee.received.voiced_seconds() >= 0.5, 15,
                              "the callee to hear the AI")

        # The callee hangs up: Meta's terminate ends the call; it is recorded as outbound.
        call_id = row["call_id"]
        await callee.hang_up()
        now = time.time()
        status = await self.h.webhook.post(webhooks.terminate_webhook(
            harness.PHONE_NUMBER_ID, call_id, caller_name="", caller_number=number,
            status="COMPLETED", start_time=now - 5, end_time=now, duration=5))
        self.assertEqual(status, 200)
        await self.wait_for_no_calls()

        async def recorded() -> bool:
            rows = await self.sql("SELECT direction, phone_number, answered_at IS NOT NULL FROM calls"
                                  " WHERE call_id = :'p1'", call_id)
            return rows == [["outbound", number, "t"]]
        await self.wait_until(recorded, 10, "the outbound calls row")
        self.assertEqual((await self.reminder(reminder_id))["status"], "delivered")
        self.assertEqual(len([r for r in self.h.graph.requests if r.action == "connect"]), 1)
        async with self.h.http.get(f"{self.h.base_url}/metrics") as response:
            metrics = await response.text()
        self.assertIn('voicebridge_calls_total{direction="outbound",outcome="completed"} 1', metrics)

    async def test_answer_after_the_connect_reply_delivers_the_reminder(self) -> None:
        await self.assert_delivered(random_number(), "Take the cake out of the oven")

    async def test_answer_before_the_connect_reply_delivers_the_reminder(self) -> None:
        self.h.graph.hold_connect_reply = True
        await self.assert_delivered(random_number(), "Call the plumber about the leak")

    async def test_rejected_calls_are_retried_then_missed(self) -> None:
        number = random_number()

        async def reject(call_id: str, body: dict) -> None:
            await self.h.webhook.post(webhooks.status_webhook(
                harness.PHONE_NUMBER_ID, call_id, "RINGING", number))
            await self.h.webhook.post(webhooks.status_webhook(
                harness.PHONE_NUMBER_ID, call_id, "REJECTED", number,
                biz_opaque_callback_data=body.get("biz_opaque_callback_data")))
            await self.h.webhook.post(webhooks.terminate_webhook(
                harness.PHONE_NUMBER_ID, call_id, caller_name="", caller_number=number, status="FAILED"))
        self.h.graph.on_outbound_connect = reject
        reminder_id = await self.add_reminder(number, "Water the plants")
        row = await self.wait_for_status(reminder_id, "missed")
        self.assertEqual(row["attempts"], "2")               # REMINDER_MAX_ATTEMPTS
        self.assertIn("rejected", row["last_error"])
        connects = [r for r in self.h.graph.requests if r.action == "connect"]
        self.assertEqual(len(connects), 2)
        self.assertTrue(all(r.body["to"] == number for r in connects))

    async def test_no_call_permission_fails_without_retry(self) -> None:
        number = random_number()
        self.h.graph.fail("connect", http_status=401, code=138006,
                          message="No approved call permission from the recipient")
        reminder_id = await self.add_reminder(number, "Pay the rent")
        row = await self.wait_for_status(reminder_id, "failed")
        self.assertEqual(row["attempts"], "1")
        self.assertIn("138006", row["last_error"])
        await asyncio.sleep(3)   # three more scheduler ticks: no second attempt
        self.assertEqual(len([r for r in self.h.graph.requests if r.action == "connect"]), 1)
        self.assertEqual((await self.reminder(reminder_id))["status"], "failed")

    async def test_the_daily_limit_reschedules_for_when_meta_allows(self) -> None:
        allowed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 3600))
        self.h.graph.fail("connect", code=138012, message="Business-initiated call limit reached",
                          details=f"The next business-initiated call is allowed after {allowed}")
        reminder_id = await self.add_reminder(random_number(), "Renew the passport")

        async def rescheduled() -> bool:
            row = await self.reminder(reminder_id)
            return row["status"] == "pending" and "138012" in row["last_error"]
        await self.wait_until(rescheduled, CALL_TIMEOUT, "the reminder to be rescheduled")
        rows = await self.sql("SELECT attempts, to_char(next_attempt_at AT TIME ZONE 'UTC',"
                              " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM reminders WHERE id = :'p1'",
                              reminder_id)
        self.assertEqual(rows, [["0", allowed]])
        self.assertEqual(len([r for r in self.h.graph.requests if r.action == "connect"]), 1)

    async def test_a_killed_servers_claim_is_taken_over_and_delivered_once(self) -> None:
        number = random_number()
        rung = asyncio.Event()

        async def never_answered(_call_id: str, _body: dict) -> None:
            rung.set()                     # the phone rings; the server dies meanwhile
        self.h.graph.on_outbound_connect = never_answered
        reminder_id = await self.add_reminder(number, "Feed the cat")
        await asyncio.wait_for(rung.wait(), CALL_TIMEOUT)
        self.assertEqual((await self.reminder(reminder_id))["status"], "calling")
        self.h.server.process.kill()       # SIGKILL while holding the claim
        await self.h.server.process.wait()
        killed = self.h
        await killed.stop()

        # Another server process: after the claim timeout (5 s) it calls again.
        self.h = harness.Harness(self.id() + ".second", env=self.server_env)
        await self.h.start()
        callee = self.answering_callee(number)
        row = await self.wait_for_status(reminder_id, "delivered")
        self.assertEqual(row["attempts"], "2")
        self.assertTrue(await asyncio.wait_for(callee.connected.wait(), 10))
        connects = [r for r in self.h.graph.requests if r.action == "connect"]
        self.assertEqual([r.body["to"] for r in connects], [number])
        await asyncio.sleep(2)             # more ticks: delivered once, never claimed again
        self.assertEqual(len([r for r in self.h.graph.requests if r.action == "connect"]), 1)
        self.assertEqual((await self.reminder(reminder_id))["status"], "delivered")

if __name__ == "__main__":
    harness.main()
