"""One inbound WhatsApp call through the real server: the answer is well
formed, pre_accept -> ICE/DTLS -> accept with the same SDP, no audio before
accept, audio both ways, and a caller hang-up (terminate webhook) frees
everything (fds and threads back to baseline)."""
import harness
from harness import E2ETestCase
from sdp_checks import assert_whatsapp_answer

CALLER_HZ = 500
REPLY_HZ = 1000
SETUP_TIMEOUT = 25
AUDIO_TIMEOUT = 20


class InboundCall(E2ETestCase):
    realtime_args = ("--tone-hz", str(REPLY_HZ), "--reply-ms", "1500")

    async def answered_call(self, name: str, wa_id: str):
        caller = self.h.new_caller(name, wa_id, frequency_hz=CALLER_HZ)
        call_id = await self.h.place_call(caller)
        pre_accept = await self.h.graph.wait_for_action(call_id, "pre_accept", SETUP_TIMEOUT)
        self.assertIsNotNone(pre_accept, "no pre_accept reached the Graph API")
        accept = await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT)
        self.assertIsNotNone(accept, "no accept reached the Graph API")
        self.assertTrue(await caller.wait_connected(SETUP_TIMEOUT), caller.states)
        self.assertEqual(self.h.graph.hook_errors, [])
        return caller, call_id, pre_accept, accept

    async def test_call_answer_audio_and_caller_hangup(self):
        caller, call_id, pre_accept, accept = await self.answered_call("Alice Example", "15551230001")

        # The answer as Meta needs it, posted twice byte-identical, in order.
        assert_whatsapp_answer(self, pre_accept.sdp, caller.offer_sdp)
        self.assertEqual(accept.sdp, pre_accept.sdp)
        self.assertEqual(pre_accept.body["session"]["sdp_type"], "answer")
        self.assertEqual(pre_accept.authorization, f"Bearer {harness.ACCESS_TOKEN}")
        self.assertLess(pre_accept.received_at, accept.received_at)
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])
        self.assertEqual(await self.h.active_calls(), 1)

        # Audio both ways: the caller's tone reaches the fake AI as speech, and
        # the AI's reply tone comes back as decodable Opus.
        async def audio_flowed() -> bool:
            session = await self.h.session_for(caller)
            return (session is not None and session["speech_stopped"] >= 1
                    and caller.received.voiced_seconds() >= 1.0)
        await self.wait_until(audio_flowed, AUDIO_TIMEOUT, "audio both ways")
        session = await self.h.session_for(caller)
        self.assertGreaterEqual(session["speech_started"], 1)
        self.assertAlmostEqual(session["input_dominant_hz"], CALLER_HZ, delta=CALLER_HZ * 0.1)
        self.assertAlmostEqual(caller.received.dominant_hz(), REPLY_HZ, delta=REPLY_HZ * 0.05)
        # Meta: no business audio before accept returned 200.
        self.assertGreater(caller.received.first_frame_at, accept.received_at)
        caller.received.save_wav(str(self.h.log_dir / "alice-heard.wav"))

        # The user hangs up: terminate webhook -> call torn down, no Graph terminate.
        self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        await self.wait_for_no_calls()

        async def session_closed() -> bool:
            return not (await self.h.session_for(caller))["open"]
        await self.wait_until(session_closed, 10, "the Realtime session to close")
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])

    async def test_resources_back_to_baseline_after_hangup(self):
        # A first call warms up one-time state (GStreamer registry, thread pools,
        # the Graph keep-alive connection); the baseline is taken after it.
        caller, call_id, _, _ = await self.answered_call("Warm Up", "15551230009")
        await self.wait_until(lambda: caller.received.voiced_seconds() >= 0.5, AUDIO_TIMEOUT,
                              "the greeting to reach the warm-up caller")
        await self.h.caller_hangs_up(caller, call_id)
        await self.wait_for_no_calls()
        baseline = await self.resource_baseline()

        caller, call_id, _, _ = await self.answered_call("Bob Example", "15551230002")
        self.assertGreater(self.h.thread_count(), baseline["threads"],
                           "a live call should own threads")
        await self.wait_until(lambda: caller.received.voiced_seconds() >= 0.5, AUDIO_TIMEOUT,
                              "the greeting to reach the caller")
        await self.h.caller_hangs_up(caller, call_id)
        await self.wait_for_no_calls()

        await self.assert_back_to_baseline(baseline)

    async def test_shutdown_ends_active_call(self):
        # SIGTERM with a caller on the line: the call is terminated at Meta and
        # the server exits with 0 (no hang, no crash).
        caller, call_id, _, _ = await self.answered_call("Frank Example", "15551230010")
        exit_code = await self.h.server.stop(grace=10)
        self.assertFalse(self.h.server.killed, "voicebridge hung on SIGTERM with an active call "
                         f"(backtrace in {self.h.log_dir})")
        self.assertEqual(exit_code, 0)
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept", "terminate"])


if __name__ == "__main__":
    harness.main()
