"""Five concurrent calls stay isolated: each fake-AI session (matched to its
caller by the profile name in the session instructions) hears only its own
caller's tone, every caller hears the AI, and all calls end cleanly."""
import asyncio

import harness
from harness import E2ETestCase
from test_call import AUDIO_TIMEOUT, SETUP_TIMEOUT

REPLY_HZ = 1200
CALLERS = [("Ana Uno", "15551230101", 300), ("Ben Dos", "15551230102", 420),
           ("Cai Tres", "15551230103", 540), ("Dia Cuatro", "15551230104", 660),
           ("Eli Cinco", "15551230105", 780)]


class ConcurrentCalls(E2ETestCase):
    realtime_args = ("--tone-hz", str(REPLY_HZ), "--reply-ms", "1000")

    async def test_five_calls_are_isolated(self):
        callers = [self.h.new_caller(name, wa_id, frequency_hz=hz) for name, wa_id, hz in CALLERS]
        call_ids = await asyncio.gather(*(self.h.place_call(c) for c in callers))
        for caller, call_id in zip(callers, call_ids):
            accept = await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT)
            self.assertIsNotNone(accept, f"{caller.name}'s call was not accepted")
        self.assertTrue(all(await asyncio.gather(*(c.wait_connected(SETUP_TIMEOUT) for c in callers))))
        self.assertEqual(await self.h.active_calls(), len(CALLERS))

        async def everyone_talked() -> bool:
            for caller in callers:
                session = await self.h.session_for(caller)
                if not session or session["speech_stopped"] < 1 or caller.received.voiced_seconds() < 0.8:
                    return False
            return True
        await self.wait_until(everyone_talked, AUDIO_TIMEOUT + 10, "audio both ways on every call")

        sessions = await self.h.sessions()
        self.assertEqual(len(sessions), len(CALLERS), "one Realtime session per call")
        for (name, _, hz), caller in zip(CALLERS, callers):
            named = [s for s in sessions if name in (s.get("instructions") or "")]
            self.assertEqual(len(named), 1, f"sessions naming {name}: {len(named)}")
            self.assertAlmostEqual(named[0]["input_dominant_hz"], hz, delta=hz * 0.1,
                                   msg=f"{name}'s AI session heard another caller")
            self.assertAlmostEqual(caller.received.dominant_hz(), REPLY_HZ, delta=REPLY_HZ * 0.05,
                                   msg=f"{name} did not hear the AI's reply tone")

        statuses = await asyncio.gather(*(self.h.caller_hangs_up(c, i) for c, i in zip(callers, call_ids)))
        self.assertEqual(list(statuses), [200] * len(CALLERS))
        await self.wait_for_no_calls()
        for call_id in call_ids:
            self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])


if __name__ == "__main__":
    harness.main()
