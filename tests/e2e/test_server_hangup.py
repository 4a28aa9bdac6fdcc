"""The server ends the call: the AI calls its end_call function, so voicebridge
must send Graph `terminate`, tear the call down and free its resources."""
import harness
from harness import E2ETestCase
from test_call import SETUP_TIMEOUT


class ServerHangsUp(E2ETestCase):
    realtime_args = ("--function-call", "end_call:{}")

    async def call_ended_by_ai(self, name: str, wa_id: str) -> None:
        caller = self.h.new_caller(name, wa_id, frequency_hz=600)
        call_id = await self.h.place_call(caller)
        terminate = await self.h.graph.wait_for_action(call_id, "terminate", SETUP_TIMEOUT + 15)
        self.assertIsNotNone(terminate, "voicebridge never sent terminate after end_call")
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept", "terminate"])
        self.assertNotIn("session", terminate.body)
        await self.wait_for_no_calls()
        session = await self.h.session_for(caller)
        self.assertIsNotNone(session, "no Realtime session carried the caller's name")

        async def session_closed() -> bool:
            return not (await self.h.session_for(caller))["open"]
        await self.wait_until(session_closed, 10, "the Realtime session to close")
        await self.wait_until(lambda: caller.ended.is_set(), 5, "the caller to be hung up")

    async def test_end_call_terminates_and_cleans_up(self):
        await self.call_ended_by_ai("Carol Example", "15551230003")
        baseline = await self.resource_baseline()
        await self.call_ended_by_ai("Dave Example", "15551230004")

        await self.assert_back_to_baseline(baseline)


if __name__ == "__main__":
    harness.main()
