"""Calls the server cannot serve are rejected through Graph `reject`: the
Realtime server is unreachable, or the concurrent-call limit is reached."""
import harness
from harness import E2ETestCase
from test_call import SETUP_TIMEOUT


class RealtimeUnreachable(E2ETestCase):
    start_realtime = False

    async def test_call_is_rejected(self):
        caller = self.h.new_caller("Unlucky Example", "15551230501", frequency_hz=400)
        call_id = await self.h.place_call(caller)
        reject = await self.h.graph.wait_for_action(call_id, "reject", SETUP_TIMEOUT + 15)
        self.assertIsNotNone(reject, "the call was not rejected")
        self.assertNotIn("accept", self.h.graph.actions(call_id))
        self.assertEqual(reject.body.get("messaging_product"), "whatsapp")
        await self.wait_for_no_calls()
        self.assertTrue((await self.h.health())["status"])


class CapacityLimit(E2ETestCase):
    server_env = {"MAX_CONCURRENT_CALLS": "1"}

    async def test_call_over_the_limit_is_rejected(self):
        first = self.h.new_caller("First Example", "15551230601", frequency_hz=400)
        first_id = await self.h.place_call(first)
        self.assertIsNotNone(await self.h.graph.wait_for_action(first_id, "accept", SETUP_TIMEOUT))
        second = self.h.new_caller("Second Example", "15551230602", frequency_hz=500)
        second_id = await self.h.place_call(second)
        self.assertIsNotNone(await self.h.graph.wait_for_action(second_id, "reject", SETUP_TIMEOUT))
        self.assertEqual(self.h.graph.actions(second_id), ["reject"])
        self.assertEqual(await self.h.active_calls(), 1)
        self.assertIsNone(await self.h.session_for(second))
        self.assertEqual(self.h.graph.actions(first_id), ["pre_accept", "accept"])


if __name__ == "__main__":
    harness.main()
