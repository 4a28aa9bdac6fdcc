"""Webhook handling through the real server: the verification handshake,
signatures, size and junk limits, /health, duplicates and out-of-order or stale
deliveries, and the missing-settings exit code."""
import os
import subprocess
import time
import unittest

import aiohttp

import harness
from fake_meta import webhooks
from harness import E2ETestCase
from test_call import SETUP_TIMEOUT


class WebhookEndpoint(E2ETestCase):
    async def get_webhook(self, params: dict) -> tuple[int, str]:
        async with self.h.http.get(f"{self.h.base_url}/webhook", params=params) as response:
            return response.status, await response.text()

    async def test_verification_handshake(self):
        good = {"hub.mode": "subscribe", "hub.verify_token": harness.VERIFY_TOKEN,
                "hub.challenge": "1158201444"}
        self.assertEqual(await self.get_webhook(good), (200, "1158201444"))
        self.assertEqual((await self.get_webhook({**good, "hub.verify_token": "nope"}))[0], 403)
        self.assertEqual((await self.get_webhook({**good, "hub.mode": "unsubscribe"}))[0], 403)
        self.assertEqual((await self.get_webhook({"hub.challenge": "1"}))[0], 403)

    async def test_health_document(self):
        health = await self.h.health()
        for key in ("status", "active_calls", "max_calls", "uptime_s", "version"):
            self.assertIn(key, health)
        self.assertEqual(health["active_calls"], 0)
        self.assertEqual(health["max_calls"], 10)

    async def test_bad_signatures_create_nothing(self):
        caller = self.h.new_caller("Mallory Example", "15551230666", frequency_hz=700)
        call_id = await self.h.prepare_call(caller)
        body = webhooks.encode(self.h.connect_payload(caller, call_id))
        bad = [
            dict(signature=webhooks.sign(body, "not-the-app-secret")),
            dict(signature=webhooks.sign(body + b" ", harness.APP_SECRET)),
            dict(signature="sha256=" + "0" * 64),
            dict(signature="sha1=" + webhooks.sign(body, harness.APP_SECRET)[7:]),
            dict(signature="garbage"),
            dict(sign_body=False),
        ]
        for options in bad:
            self.assertEqual(await self.h.webhook.post(body, **options), 401, options)
        # A valid call afterwards is served; by then the bad ones would have been.
        await self.answered_sentinel()
        self.assertEqual(self.h.graph.requests_for(call_id), [])
        self.assertIsNone(await self.h.session_for(caller))
        self.assertEqual(len(await self.h.sessions()), 1)

    async def test_oversized_and_junk_bodies(self):
        huge = b'{"object":"whatsapp_business_account","pad":"' + b"x" * (3 * 1024 * 1024) + b'"}'
        self.assertEqual(await self.h.webhook.post(huge), 413)
        for junk in (b"not json", b"[]", b"{", b'{"object":"whatsapp_business_account"}'):
            self.assertEqual(await self.h.webhook.post(junk), 400, junk)
        self.assertEqual((await self.h.health())["active_calls"], 0)
        self.assertEqual(self.h.graph.requests, [])

    async def test_closed_client_connections_are_released(self):
        # Meta closes its webhook connections; each must not cost the server an
        # fd for ever (libsoup 3.2 leaks idle keep-alive connections closed by
        # the client unless the server closes them, e.g. "Connection: close").
        await self.h.health()
        baseline = self.h.fd_count()
        for _ in range(5):
            async with aiohttp.ClientSession() as fresh:
                async with fresh.get(f"{self.h.base_url}/health") as response:
                    await response.read()
            await self.h.webhook.post(b"not json")
        try:
            await self.wait_until(lambda: self.h.fd_count() <= baseline, 10,
                                  "the server to close connections its clients closed")
        except AssertionError:
            self.fail(f"fds {self.h.fd_count()} (baseline {baseline}): "
                      f"{[t for t in self.h.fd_targets() if 'tcp' in t]}")

    async def answered_sentinel(self) -> None:
        """Places a normal call and waits until it is accepted. Webhooks are
        handled in arrival order, so anything sent earlier has been acted on."""
        caller = self.h.new_caller("Sentinel Example", "15551239999", frequency_hz=880)
        call_id = await self.h.place_call(caller)
        self.assertIsNotNone(await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT))

    async def test_duplicate_webhooks_answer_once(self):
        caller = self.h.new_caller("Duplicate Example", "15551230201", frequency_hz=450)
        call_id = await self.h.prepare_call(caller)
        connect = webhooks.encode(self.h.connect_payload(caller, call_id))
        self.assertEqual(await self.h.webhook.post(connect), 200)
        self.assertEqual(await self.h.webhook.post(connect), 200)
        self.assertIsNotNone(await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT))
        self.assertEqual(await self.h.webhook.post(connect), 200)   # a late retry
        await self.answered_sentinel()
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])
        self.assertEqual(len(self.h.graph.requests_for(call_id)), 2)
        sessions = [s for s in await self.h.sessions() if caller.name in (s.get("instructions") or "")]
        self.assertEqual(len(sessions), 1)

        terminate = webhooks.encode(self.h.terminate_payload(caller, call_id, duration=3))
        self.assertEqual(await self.h.webhook.post(terminate), 200)
        self.assertEqual(await self.h.webhook.post(terminate), 200)
        async def one_call_left() -> bool:
            return await self.h.active_calls() == 1      # the sentinel
        await self.wait_until(one_call_left, 15, "the duplicated call to end")
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])

    async def test_terminate_before_connect_is_never_answered(self):
        caller = self.h.new_caller("Early Hangup", "15551230301", frequency_hz=350)
        call_id = await self.h.prepare_call(caller)
        self.assertEqual(await self.h.webhook.post(
            self.h.terminate_payload(caller, call_id, status="FAILED")), 200)
        self.assertEqual(await self.h.webhook.post(self.h.connect_payload(caller, call_id)), 200)
        await self.answered_sentinel()
        self.assertEqual(self.h.graph.requests_for(call_id), [])
        self.assertIsNone(await self.h.session_for(caller))
        self.assertEqual(await self.h.active_calls(), 1)

    async def test_terminate_before_connect_in_one_batch(self):
        caller = self.h.new_caller("Batch Hangup", "15551230302", frequency_hz=360)
        call_id = await self.h.prepare_call(caller)
        both = webhooks.batch(self.h.connect_payload(caller, call_id),
                              self.h.terminate_payload(caller, call_id, status="FAILED"))
        self.assertEqual(await self.h.webhook.post(both), 200)
        await self.answered_sentinel()
        self.assertEqual(self.h.graph.requests_for(call_id), [])
        self.assertIsNone(await self.h.session_for(caller))

    async def test_stale_connect_is_not_answered(self):
        caller = self.h.new_caller("Stale Example", "15551230401", frequency_hz=370)
        call_id = await self.h.prepare_call(caller)
        stale = self.h.connect_payload(caller, call_id, timestamp=time.time() - 3600)
        self.assertEqual(await self.h.webhook.post(stale), 200)
        await self.answered_sentinel()
        self.assertEqual(self.h.graph.requests_for(call_id), [])
        self.assertIsNone(await self.h.session_for(caller))


class MissingSettings(unittest.TestCase):
    def test_exit_code_2_names_missing_variables(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WHATSAPP_", "OPENAI_", "AZURE_OPENAI_"))}
        env["WHATSAPP_VERIFY_TOKEN"] = "set"
        result = subprocess.run([str(harness.BUILD_ROOT / "src/voicebridge")], env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
        self.assertEqual(result.returncode, 2, result.stderr.decode(errors="replace"))
        stderr = result.stderr.decode(errors="replace")
        for name in ("WHATSAPP_APP_SECRET", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"):
            self.assertIn(name, stderr)
        self.assertNotIn("WHATSAPP_VERIFY_TOKEN:", stderr)


if __name__ == "__main__":
    harness.main()
