"""Self-tests of the fake Meta package (no voicebridge needed): signatures,
payload shapes, the Graph API fake's validation, and the aiortc caller's
WhatsApp-shaped offer against a second aiortc peer. Run inside tests/netns-run
(aiortc ignores loopback for ICE)."""
import asyncio
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "doubles"))

import aiohttp  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from fake_meta import webhooks  # noqa: E402
from fake_meta.caller import AudioRecorder, BurstSignal, Caller, SignalTrack  # noqa: E402
from fake_meta.graph_api import FakeGraphApi  # noqa: E402

TOKEN, PNID = "test-token", "106540352242922"
VALID_SDP = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
             "a=fingerprint:sha-256 AB:CD\r\na=setup:active\r\na=mid:audio\r\n")


class SignatureAndPayloads(unittest.TestCase):
    def test_sign_matches_rfc4231_vector(self):
        # RFC 4231 test case 2 (HMAC-SHA-256).
        self.assertEqual(webhooks.sign(b"what do ya want for nothing?", "Jefe"),
                         "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")

    def test_connect_webhook_shape(self):
        payload = webhooks.connect_webhook(PNID, "wacid.A", "v=0\r\n", caller_name="Alice",
                                           caller_number="15551230001", timestamp=1700000000)
        self.assertEqual(payload["object"], "whatsapp_business_account")
        change = payload["entry"][0]["changes"][0]
        self.assertEqual(change["field"], "calls")
        value = change["value"]
        self.assertEqual(value["metadata"]["phone_number_id"], PNID)
        self.assertEqual(value["contacts"], [{"profile": {"name": "Alice"}, "wa_id": "15551230001"}])
        call = value["calls"][0]
        self.assertEqual(call["timestamp"], "1700000000")
        self.assertEqual((call["event"], call["direction"]), ("connect", "USER_INITIATED"))
        self.assertEqual(call["session"], {"sdp": "v=0\r\n", "sdp_type": "offer"})
        self.assertEqual(json.loads(webhooks.encode(payload)), payload)

    def test_terminate_webhook_shape(self):
        payload = webhooks.terminate_webhook(
            PNID, "wacid.A", caller_name="Alice", caller_number="1555", status="FAILED",
            start_time=100, end_time=120, duration=20,
            errors=[webhooks.call_error(138021, "no media", "details")])
        call = payload["entry"][0]["changes"][0]["value"]["calls"][0]
        self.assertEqual((call["event"], call["status"], call["duration"]), ("terminate", "FAILED", 20))
        self.assertEqual((call["start_time"], call["end_time"]), ("100", "120"))
        self.assertEqual(call["errors"][0]["code"], 138021)
        self.assertIsInstance(call["timestamp"], str)

    def test_status_and_batch(self):
        status = webhooks.status_webhook(PNID, "wacid.B", "RINGING", "1555")
        item = status["entry"][0]["changes"][0]["value"]["statuses"][0]
        self.assertEqual((item["type"], item["status"]), ("call", "RINGING"))
        merged = webhooks.batch(status, webhooks.terminate_webhook(
            PNID, "wacid.B", caller_name="B", caller_number="1555"))
        self.assertEqual(len(merged["entry"]), 2)


class GraphApiFake(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.graph = FakeGraphApi(TOKEN, PNID)
        await self.graph.start()
        self.session = aiohttp.ClientSession()
        self.answers = []
        self.ends = []

        async def on_answer(call_id, sdp):
            self.answers.append((call_id, sdp))

        async def on_end(call_id, action):
            self.ends.append((call_id, action))
        self.graph.expect_call("wacid.A", on_answer=on_answer, on_end=on_end)

    async def asyncTearDown(self):
        await self.session.close()
        await self.graph.stop()

    async def post(self, body, token=TOKEN, pnid=PNID):
        async with self.session.post(f"{self.graph.base_url()}/{pnid}/calls", json=body,
                                     headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status, await response.json()

    def body(self, action, sdp=VALID_SDP, **extra):
        body = {"messaging_product": "whatsapp", "call_id": "wacid.A", "action": action}
        if sdp is not None:
            body["session"] = {"sdp_type": "answer", "sdp": sdp}
        body.update(extra)
        return body

    async def test_happy_path_records_and_calls_hooks(self):
        self.assertEqual(await self.post(self.body("pre_accept")),
                         (200, {"messaging_product": "whatsapp", "success": True}))
        self.assertEqual((await self.post(self.body("accept")))[0], 200)
        self.assertEqual((await self.post(self.body("terminate", sdp=None)))[0], 200)
        await asyncio.sleep(0)
        self.assertEqual(self.graph.actions("wacid.A"), ["pre_accept", "accept", "terminate"])
        self.assertEqual(self.answers, [("wacid.A", VALID_SDP)])
        self.assertEqual(self.ends, [("wacid.A", "terminate")])
        self.assertIsNotNone(await self.graph.wait_for_action("wacid.A", "accept", 1))

    async def test_bad_token(self):
        status, body = await self.post(self.body("pre_accept"), token="wrong")
        self.assertEqual((status, body["error"]["code"]), (401, 190))

    async def test_wrong_phone_number_id(self):
        status, body = await self.post(self.body("pre_accept"), pnid="999")
        self.assertEqual((status, body["error"]["code"]), (400, 100))

    async def test_invalid_bodies_get_meta_errors(self):
        cases = [
            self.body("PRE_ACCEPT"),
            {**self.body("pre_accept"), "session": {"sdp_type": "offer", "sdp": VALID_SDP}},
            self.body("pre_accept", sdp=VALID_SDP.replace("\r\n", "\n")),
            self.body("pre_accept", sdp=VALID_SDP.replace("a=fingerprint:sha-256 AB:CD\r\n", "")),
            {**self.body("pre_accept"), "call_id": "wacid.unknown"},
            {k: v for k, v in self.body("pre_accept").items() if k != "messaging_product"},
        ]
        for body in cases:
            status, reply = await self.post(body)
            self.assertEqual(status, 400, body)
            self.assertEqual(reply["error"]["code"], 100, body)
            self.assertIn("fbtrace_id", reply["error"])
        self.assertEqual(self.graph.actions("wacid.A"), [])
        self.assertEqual(self.answers, [])

    async def test_accept_must_repeat_pre_accept_sdp(self):
        await self.post(self.body("pre_accept"))
        status, reply = await self.post(self.body("accept", sdp=VALID_SDP + "a=sendrecv\r\n"))
        self.assertEqual(status, 400)
        self.assertIn("differs", reply["error"]["error_data"]["details"])

    async def test_scripted_failure(self):
        self.graph.fail("pre_accept", http_status=500, code=138004, message="Connection error",
                        details="try again")
        status, reply = await self.post(self.body("pre_accept"))
        self.assertEqual((status, reply["error"]["code"]), (500, 138004))
        self.assertEqual(reply["error"]["error_data"]["details"], "try again")
        self.assertEqual((await self.post(self.body("pre_accept")))[0], 200)

    async def test_outbound_connect_returns_call_id(self):
        offers = []

        async def on_connect(call_id, body):
            offers.append(call_id)
        self.graph.on_outbound_connect = on_connect
        status, reply = await self.post({"messaging_product": "whatsapp", "to": "15551230001",
                                         "action": "connect",
                                         "session": {"sdp_type": "offer", "sdp": VALID_SDP}})
        self.assertEqual(status, 200)
        await asyncio.sleep(0)
        self.assertEqual(offers, [reply["calls"][0]["id"]])


class CallerOffer(unittest.IsolatedAsyncioTestCase):
    async def test_offer_has_whatsapp_shape(self):
        caller = Caller("Alice", "15551230001", frequency_hz=400)
        try:
            sdp = await caller.make_offer()
        finally:
            await caller.hang_up()
        self.assertTrue(sdp.startswith("v=0\r\n") and sdp.endswith("\r\n"))
        self.assertNotRegex(sdp, r"(?<!\r)\n")
        lines = sdp.split("\r\n")
        self.assertLess(lines.index("a=ice-lite"), next(i for i, l in enumerate(lines) if l.startswith("m=")))
        self.assertIn("a=group:BUNDLE audio", lines)
        self.assertIn("a=mid:audio", lines)
        self.assertRegex(sdp, r"\r\nm=audio \d+ UDP/TLS/RTP/SAVPF 111 126\r\n")
        self.assertIn("a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;"
                      "sprop-maxcapturerate=16000;useinbandfec=1", lines)
        self.assertIn("a=rtpmap:126 telephone-event/8000", lines)
        self.assertEqual([l for l in lines if l.startswith("a=fingerprint:")][0][:22], "a=fingerprint:sha-256 ")
        self.assertEqual(sum(l.startswith("a=fingerprint:") for l in lines), 1)
        self.assertGreater(sum(l.startswith("a=candidate:") for l in lines), 0)
        self.assertIn("a=setup:actpass", lines)
        self.assertIn("a=ptime:20", lines)
        self.assertNotIn("a=end-of-candidates", lines)


class CallerAgainstAiortc(unittest.IsolatedAsyncioTestCase):
    """The caller's ice-lite offer against a full aiortc answerer: the answerer
    must take the controlling role and media must flow both ways."""

    async def test_connects_and_audio_flows_both_ways(self):
        caller = Caller("Alice", "15551230001", frequency_hz=500)
        answerer = RTCPeerConnection()
        heard_by_answerer = AudioRecorder()
        answerer.on("track", lambda track: heard_by_answerer.start(track))
        try:
            offer = await caller.make_offer()
            await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            answerer.getTransceivers()[0].sender.replaceTrack(
                SignalTrack(BurstSignal(1200, on_s=10, off_s=0)))
            answerer.getTransceivers()[0].direction = "sendrecv"
            await answerer.setLocalDescription(await answerer.createAnswer())
            ice = answerer.getTransceivers()[0].sender.transport.transport
            self.assertTrue(ice._connection.ice_controlling, "answerer should control (offer is lite)")
            await caller.apply_answer(answerer.localDescription.sdp)
            self.assertTrue(await caller.wait_connected(20), caller.states)
            for _ in range(200):
                if caller.received.seconds > 2 and heard_by_answerer.voiced_seconds() > 1:
                    break
                await asyncio.sleep(0.05)
            self.assertGreater(caller.received.seconds, 2)
            self.assertAlmostEqual(caller.received.dominant_hz(), 1200, delta=30)
            self.assertAlmostEqual(heard_by_answerer.dominant_hz(), 500, delta=30)
            self.assertEqual(caller.connection_state, "connected")
        finally:
            await heard_by_answerer.stop()
            await caller.hang_up()
            await answerer.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
