"""A caller whose media stops is hung up by the server (MEDIA_TIMEOUT_S).

With several replicas behind a load balancer, Meta's terminate webhook may
reach another replica: a caller who hung up then just goes silent on the
network. The server must end such a call itself, telling Meta (Graph
terminate), while a caller who keeps sending stays connected."""
import harness
from harness import E2ETestCase
from test_call import AUDIO_TIMEOUT, SETUP_TIMEOUT
from test_operations import parse_metrics

MEDIA_TIMEOUT_S = 5
# The server checks the packet count every 2 s; the rest is slack for a
# loaded machine. A bound for the wait, not a measurement.
TERMINATE_WAIT_S = MEDIA_TIMEOUT_S + 15
TIMEOUT_LOG_LINE = f"no audio from the caller for {MEDIA_TIMEOUT_S} s"
COMPLETED = 'voicebridge_calls_total{direction="inbound",outcome="completed"}'


class MediaTimeout(E2ETestCase):
    server_env = {"MEDIA_TIMEOUT_S": str(MEDIA_TIMEOUT_S)}

    async def answered_call(self, name: str, wa_id: str):
        caller = self.h.new_caller(name, wa_id, frequency_hz=700)
        call_id = await self.h.place_call(caller)
        self.assertIsNotNone(await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT),
                             "no accept reached the Graph API")
        self.assertTrue(await caller.wait_connected(SETUP_TIMEOUT), caller.states)
        await self.wait_until(lambda: caller.received.voiced_seconds() >= 0.5, AUDIO_TIMEOUT,
                              "the greeting to reach the caller")
        return caller, call_id

    async def completed_calls(self) -> float:
        async with self.h.http.get(f"{self.h.base_url}/metrics") as response:
            self.assertEqual(response.status, 200)
            return parse_metrics(await response.text()).get(COMPLETED, 0)

    async def test_silent_caller_is_terminated(self):
        caller, call_id = await self.answered_call("Gina Example", "15551230021")
        self.assertEqual(await self.h.active_calls(), 1)

        # The user hangs up but no terminate webhook reaches this server.
        await caller.hang_up()
        terminate = await self.h.graph.wait_for_action(call_id, "terminate", TERMINATE_WAIT_S)
        self.assertIsNotNone(terminate, "the silent call was never terminated")
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept", "terminate"])
        self.assertNotIn("session", terminate.body)
        await self.wait_for_no_calls()
        self.assertIn(TIMEOUT_LOG_LINE, self.h.server.log_text())
        # It had been answered: it counts as completed, not failed.
        self.assertEqual(await self.completed_calls(), 1)

        async def session_closed() -> bool:
            return not (await self.h.session_for(caller))["open"]
        await self.wait_until(session_closed, 10, "the Realtime session to close")

    async def test_talking_caller_is_not_ended(self):
        caller, call_id = await self.answered_call("Hugo Example", "15551230022")

        # Three timeouts' worth of the server's audio heard by the caller, who
        # sends its own signal (tone and silent frames) all along.
        await self.wait_until(lambda: caller.received.seconds >= 3 * MEDIA_TIMEOUT_S,
                              3 * MEDIA_TIMEOUT_S + AUDIO_TIMEOUT,
                              f"{3 * MEDIA_TIMEOUT_S} s of call audio")
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])
        self.assertEqual(await self.h.active_calls(), 1)
        self.assertNotIn(TIMEOUT_LOG_LINE, self.h.server.log_text())

        self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        await self.wait_for_no_calls()
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])


if __name__ == "__main__":
    harness.main()
