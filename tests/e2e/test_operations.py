"""Operations: the capacity limit (the call over it is rejected through the
Graph API, the others keep their audio), /health, /ready and /metrics during
calls (values consistent, the exposition accepted by promtool), LOG_FORMAT=json
lines, and the SIGTERM drain: new calls rejected, /ready 503, the process
exiting 0 once the last call ended or after DRAIN_TIMEOUT_S with a Graph
terminate for the calls still up."""
import asyncio
import json
import re
import shutil
import signal

import harness
from harness import E2ETestCase
from test_call import AUDIO_TIMEOUT, SETUP_TIMEOUT

REPLY_HZ = 900
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """'name{labels}' -> value, for every sample line of the exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if not match:
            raise AssertionError(f"not a sample line: {line!r}")
        samples[match.group(1)] = float(match.group(2))
    return samples


class OperationsTestCase(E2ETestCase):
    realtime_args = ("--tone-hz", str(REPLY_HZ), "--reply-ms", "1000")

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.h.http.get(f"{self.h.base_url}{path}") as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def metrics(self) -> dict[str, float]:
        status, content_type, text = await self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("text/plain"), content_type)
        self.assertIn("version=0.0.4", content_type)
        return parse_metrics(text)

    async def check_with_promtool(self) -> None:
        if not shutil.which("promtool"):
            print("promtool not installed (Debian package prometheus): exposition format not checked")
            return
        _, _, text = await self.get("/metrics")
        promtool = await asyncio.create_subprocess_exec(
            "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await promtool.communicate(text.encode())
        self.assertEqual(promtool.returncode, 0, output.decode())
        self.assertEqual(output.decode().strip(), "", "promtool found problems")

    async def answered_call(self, name: str, wa_id: str, hz: int):
        caller = self.h.new_caller(name, wa_id, frequency_hz=hz)
        call_id = await self.h.place_call(caller)
        self.assertIsNotNone(await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT),
                             f"{name}'s call was not accepted")
        self.assertTrue(await caller.wait_connected(SETUP_TIMEOUT), caller.states)
        return caller, call_id

    async def wait_for_audio(self, caller, voiced_seconds: float) -> None:
        async def flowed() -> bool:
            session = await self.h.session_for(caller)
            return (session is not None and session["speech_stopped"] >= 1
                    and caller.received.voiced_seconds() >= voiced_seconds)
        await self.wait_until(flowed, AUDIO_TIMEOUT, f"audio both ways for {caller.name}")

    async def not_ready(self) -> bool:
        return (await self.get("/ready"))[0] == 503

    async def wait_for_exit(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.h.server.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.fail(f"voicebridge still running {timeout} s after the drain should have ended")


class CapacityAndEndpoints(OperationsTestCase):
    server_env = {"MAX_CONCURRENT_CALLS": "2"}

    async def test_capacity_health_ready_metrics(self):
        status, _, body = await self.get("/ready")
        self.assertEqual((status, body), (200, "ready: 0 of 2 calls\n"))
        idle = await self.metrics()
        self.assertEqual(idle["voicebridge_max_calls"], 2)
        self.assertEqual(idle['voicebridge_active_calls{direction="inbound"}'], 0)
        self.assertEqual(idle["voicebridge_call_setup_seconds_count"], 0)
        self.assertEqual(idle["voicebridge_draining"], 0)

        first, first_id = await self.answered_call("Olga Ops", "15551230701", 350)
        await self.wait_for_audio(first, 0.5)

        health = await self.h.health()
        self.assertEqual(health["status"], "healthy")
        self.assertEqual(health["active_calls"], 1)
        self.assertEqual(health["max_calls"], 2)
        self.assertEqual(health["capacity_used_percent"], 50)
        self.assertGreaterEqual(health["uptime_s"], 0)
        self.assertTrue(health["version"])
        during = await self.metrics()
        self.assertEqual(during['voicebridge_active_calls{direction="inbound"}'], 1)
        self.assertEqual(during['voicebridge_active_calls{direction="outbound"}'], 0)
        self.assertEqual(during["voicebridge_call_setup_seconds_count"], 1)
        self.assertEqual(during['voicebridge_call_setup_seconds_bucket{le="+Inf"}'], 1)
        self.assertGreater(during["voicebridge_call_setup_seconds_sum"], 0)
        self.assertGreaterEqual(during["voicebridge_webhooks_total"], 1)
        self.assertEqual(during["voicebridge_webhook_signature_failures_total"], 0)
        if health["database"] == "none":
            self.assertNotIn("voicebridge_database_up", during)
        else:
            self.assertEqual(during["voicebridge_database_up"], 1 if health["database"] == "ok" else 0)
        frames_in = during['voicebridge_audio_frames_total{direction="in"}']
        frames_out = during['voicebridge_audio_frames_total{direction="out"}']
        self.assertGreater(frames_in, 0)
        self.assertGreater(frames_out, 0)

        async def frames_grew() -> bool:
            now = await self.metrics()
            return (now['voicebridge_audio_frames_total{direction="in"}'] > frames_in
                    and now['voicebridge_audio_frames_total{direction="out"}'] >= frames_out)
        await self.wait_until(frames_grew, 10, "audio frame counters to grow during the call")
        await self.check_with_promtool()

        # The second call fills the server: not ready any more, the third is rejected.
        second, second_id = await self.answered_call("Paul Ops", "15551230702", 450)
        status, _, body = await self.get("/ready")
        self.assertEqual((status, body), (503, "not ready: at capacity, 2 of 2 calls\n"))
        self.assertEqual((await self.h.health())["capacity_used_percent"], 100)
        third = self.h.new_caller("Quinn Ops", "15551230703", frequency_hz=550)
        third_id = await self.h.place_call(third)
        self.assertIsNotNone(await self.h.graph.wait_for_action(third_id, "reject", SETUP_TIMEOUT))
        self.assertEqual(self.h.graph.actions(third_id), ["reject"])
        self.assertIsNone(await self.h.session_for(third))

        # The first two are unaffected: both still hear the AI and are heard.
        await self.wait_for_audio(second, 0.5)
        heard_before = first.received.voiced_seconds()
        await self.h.start_reply(first)  # False while a reply is still playing: that one counts too
        await self.wait_until(lambda: first.received.voiced_seconds() > heard_before + 0.3, AUDIO_TIMEOUT,
                              "the first caller to keep hearing the AI")
        self.assertEqual(await self.h.active_calls(), 2)
        full = await self.metrics()
        self.assertEqual(full["voicebridge_capacity_rejections_total"], 1)
        self.assertEqual(full['voicebridge_calls_total{direction="inbound",outcome="rejected"}'], 1)
        self.assertEqual(full['voicebridge_active_calls{direction="inbound"}'], 2)
        self.assertEqual(full["voicebridge_call_setup_seconds_count"], 2)

        for caller, call_id in ((first, first_id), (second, second_id)):
            self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        await self.wait_for_no_calls()
        after = await self.metrics()
        self.assertEqual(after['voicebridge_calls_total{direction="inbound",outcome="completed"}'], 2)
        self.assertEqual(after['voicebridge_calls_total{direction="inbound",outcome="failed"}'], 0)
        self.assertGreaterEqual(after['voicebridge_audio_frames_total{direction="in"}'],
                                full['voicebridge_audio_frames_total{direction="in"}'])
        status, _, _ = await self.get("/ready")
        self.assertEqual(status, 200)
        for call_id in (first_id, second_id):
            self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])


class DrainUntilCallsEnd(OperationsTestCase):
    server_env = {"DRAIN_TIMEOUT_S": "120"}

    async def test_drain_lets_the_call_finish(self):
        caller, call_id = await self.answered_call("Rosa Drain", "15551230801", 400)
        self.h.server.process.send_signal(signal.SIGTERM)
        await self.wait_until(self.not_ready, 10, "/ready to answer 503 after SIGTERM")
        status, _, body = await self.get("/ready")
        self.assertEqual((status, body), (503, "not ready: draining (shutting down), 1 of 10 calls\n"))
        self.assertEqual((await self.h.health())["status"], "draining")
        self.assertEqual((await self.metrics())["voicebridge_draining"], 1)

        # A new call while draining is refused through the Graph API.
        late = self.h.new_caller("Sam Late", "15551230802", frequency_hz=500)
        late_id = await self.h.place_call(late)
        self.assertIsNotNone(await self.h.graph.wait_for_action(late_id, "reject", SETUP_TIMEOUT))
        self.assertEqual(self.h.graph.actions(late_id), ["reject"])
        rejected = await self.metrics()
        self.assertEqual(rejected['voicebridge_calls_total{direction="inbound",outcome="rejected"}'], 1)

        # The active call goes on until the caller hangs up; then the server exits 0.
        await self.wait_for_audio(caller, 0.5)
        self.assertTrue(self.h.server.running)
        self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        self.assertEqual(await self.wait_for_exit(10), 0)
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])


class SecondSignal(OperationsTestCase):
    server_env = {"DRAIN_TIMEOUT_S": "120"}

    async def test_second_signal_ends_the_drain(self):
        caller, call_id = await self.answered_call("Uma Impatient", "15551230851", 400)
        self.h.server.process.send_signal(signal.SIGTERM)
        await self.wait_until(self.not_ready, 10, "/ready to answer 503 after SIGTERM")
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept"])
        self.h.server.process.send_signal(signal.SIGINT)
        self.assertEqual(await self.wait_for_exit(15), 0)
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept", "terminate"])


class DrainTimeout(OperationsTestCase):
    server_env = {"DRAIN_TIMEOUT_S": "2", "LOG_FORMAT": "json"}

    async def test_call_still_up_is_terminated(self):
        caller, call_id = await self.answered_call("Tom Timeout", "15551230901", 400)
        await self.wait_for_audio(caller, 0.3)
        await self.h.send_to_session(caller, '{"type": "response.output_audio.delta", "delta": ')  # malformed
        await self.h.wait_until(lambda: "malformed server event" in self.h.server.log_text(), 10,
                                "the element's warning in the server's log")
        self.h.server.process.send_signal(signal.SIGTERM)
        await self.wait_until(self.not_ready, 10, "/ready to answer 503 after SIGTERM")
        self.assertEqual(await self.wait_for_exit(15), 0)
        self.assertEqual(self.h.graph.actions(call_id), ["pre_accept", "accept", "terminate"])

        # LOG_FORMAT=json: one object per line, lines about the call carry its
        # id, and the caller's number never appears in full.
        log = self.h.server.log_text()
        self.assertNotIn(caller.wa_id, log)
        entries = [json.loads(line) for line in log.splitlines() if line.strip()]
        self.assertGreater(len(entries), 5)
        for entry in entries:
            self.assertTrue({"ts", "level", "domain", "message"} <= entry.keys(), entry)
        # Our GStreamer elements' warnings come through the same log.
        self.assertTrue(any(e["domain"] == "gstreamer" and "malformed server event" in e["message"] for e in entries),
                        [e for e in entries if e["domain"] == "gstreamer"])
        about_call = [e for e in entries if e.get("call_id") == call_id]
        self.assertTrue(any("ending (server shutting down)" in e["message"] for e in about_call),
                        [e["message"] for e in about_call])


if __name__ == "__main__":
    harness.main()
