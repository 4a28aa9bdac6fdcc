"""The server built with AddressSanitizer and UndefinedBehaviorSanitizer takes
several calls, then gets SIGTERM: it must exit 0 with no ASan, UBSan or
LeakSanitizer report (LeakSanitizer reports at exit).

Three server runs, nine calls: caller hang-ups, two concurrent calls and one
over the call limit (rejected), a Realtime session dropped mid-call
(reconnect), junk from the AI and from the network, an accept Meta refuses, a
call still up at shutdown, calls in which the AI uses tools (valid and invalid
calls; PostgreSQL when DATABASE_URL is set) and then ends them with end_call,
and a call rejected because the Realtime server is unreachable.

Needs VOICEBRIDGE_ASAN_BUILD=<meson build dir configured with
-Db_sanitize=address,undefined> holding src/voicebridge; without it the test
is skipped (exit 77). Runs inside tests/netns-run like the e2e tests, whose
harness it uses with the sanitized server in place of the regular one.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import unittest
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SKIPPED = 77
SUPPRESSIONS = HERE / "lsan.supp"

# Any report of the three sanitizers, as they print it.
REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: (AddressSanitizer|LeakSanitizer)"
                    r"|runtime error:|SUMMARY: \w+Sanitizer")


def sanitized_server() -> Optional[Path]:
    build = os.environ.get("VOICEBRIDGE_ASAN_BUILD")
    return Path(build) / "src" / "voicebridge" if build else None


def check_instrumented(server: Path) -> Optional[str]:
    """Why `server` cannot be used, or None: it must exist and link the ASan and
    UBSan runtimes (else the test would pass without checking anything)."""
    if not server.is_file():
        return f"{server} does not exist (build it: meson compile -C <asan build> src/voicebridge)"
    libraries = subprocess.run(["ldd", str(server)], capture_output=True, text=True).stdout
    missing = [runtime for runtime in ("libasan", "libubsan") if runtime not in libraries]
    if missing:
        return f"{server} is not built with -Db_sanitize=address,undefined (no {', '.join(missing)})"
    return None


def sanitizer_env(server: Path) -> dict[str, Optional[str]]:
    """The sanitized server's extra environment (the fakes do not get it)."""
    return {
        # Full stacks through GLib/GStreamer (built without frame pointers):
        # the suppressions match frames deep in them.
        "ASAN_OPTIONS": "detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=40"
                        ":check_initialization_order=1:detect_stack_use_after_return=1",
        "LSAN_OPTIONS": f"suppressions={SUPPRESSIONS}:print_suppressions=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=0",
        # Our element's debug lines format every server event: check that too.
        "GST_DEBUG": "*:2,openairealtime:5",
        "GST_DEBUG_NO_COLOR": "1",
        # GLib 2.74's slice allocator hides frees from LeakSanitizer.
        "G_SLICE": "always-malloc",
        "G_DEBUG": "gc-friendly",
        # The element is registered statically; keep the regular build's
        # uninstrumented module out, and its registry apart.
        "GST_PLUGIN_PATH": None,
        "GST_REGISTRY": str(server.parent.parent / "sanitizer-registry.bin"),
    }


SERVER = sanitized_server()
if SERVER:
    # harness picks the server binary when imported.
    os.environ["VOICEBRIDGE_SERVER"] = str(SERVER)
sys.path.insert(0, str(HERE.parent / "e2e"))

import harness  # noqa: E402
from fake_meta import webhooks  # noqa: E402
from fake_meta.caller import BurstSignal  # noqa: E402

SETUP_TIMEOUT = 40      # sanitizers slow the server down several times
AUDIO_TIMEOUT = 40
EXIT_TIMEOUT = 90       # LeakSanitizer scans the whole heap at exit
CALLER_HZ, REPLY_HZ = 500, 1000


class SanitizedServer(unittest.IsolatedAsyncioTestCase):
    realtime_args: tuple[str, ...] = ()
    start_realtime = True
    server_env: dict[str, str] = {}

    async def asyncSetUp(self) -> None:
        asyncio.get_running_loop().set_debug(False)
        self.h = harness.Harness(self.id(), realtime_args=self.realtime_args,
                                 start_realtime=self.start_realtime,
                                 env={**sanitizer_env(SERVER), **self.server_env})
        self.stopped = False
        try:
            await self.h.start()
        except BaseException:
            self.h.dump_logs()
            await self.h.stop()
            raise

    async def asyncTearDown(self) -> None:
        if not self.stopped:       # the test failed before its own check
            await self.h.stop()
            self.h.dump_logs()

    async def assert_clean_exit(self) -> None:
        """SIGTERM; the server must exit 0 with no sanitizer report."""
        exit_code = await self.h.server.stop(grace=EXIT_TIMEOUT)
        self.stopped = True
        await self.h.stop()
        log = self.h.server.log_text()
        reports = [line for line in log.splitlines() if REPORT.search(line)]
        if reports or exit_code != 0:
            self.h.dump_logs(tail_lines=400)
        self.assertFalse(self.h.server.killed, f"voicebridge hung on SIGTERM (see {self.h.log_dir})")
        self.assertEqual(reports, [], f"sanitizer reports in {self.h.server.log_path}")
        self.assertEqual(exit_code, 0, f"voicebridge exit code (log: {self.h.server.log_path})")

    async def answered_call(self, name: str, wa_id: str) -> tuple[harness.Caller, str]:
        caller = self.h.new_caller(name, wa_id, frequency_hz=CALLER_HZ)
        call_id = await self.h.place_call(caller)
        accept = await self.h.graph.wait_for_action(call_id, "accept", SETUP_TIMEOUT)
        self.assertIsNotNone(accept, f"{name}'s call was not accepted")
        self.assertTrue(await caller.wait_connected(SETUP_TIMEOUT), caller.states)
        return caller, call_id

    async def wait_for_calls(self, count: int, timeout: float = 30) -> None:
        async def reached() -> bool:
            return await self.h.active_calls() == count
        await self.h.wait_until(reached, timeout, f"/health active_calls == {count}")

    async def session_index(self, caller: harness.Caller) -> int:
        sessions = await self.h.sessions()
        return [i for i, s in enumerate(sessions) if caller.name in (s.get("instructions") or "")][-1]

    async def control(self, caller: harness.Caller, action: str, body: bytes = b"") -> None:
        """POST /_test/sessions/<caller's session>/<action> to fake-realtime."""
        http_url = self.h.realtime_url.replace("ws://", "http://").split("/v1/")[0]
        url = f"{http_url}/_test/sessions/{await self.session_index(caller)}/{action}"
        async with self.h.http.post(url, data=body) as response:
            response.raise_for_status()


class CallsHangUpsAndShutdown(SanitizedServer):
    """Six calls through one server, ending every way but end_call."""
    realtime_args = ("--tone-hz", str(REPLY_HZ), "--reply-ms", "1000")
    server_env = {"MAX_CONCURRENT_CALLS": "2"}

    async def send_junk(self) -> None:
        base = self.h.base_url
        async with self.h.http.get(f"{base}/webhook", params={
                "hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}) as r:
            self.assertEqual(r.status, 403)
        async with self.h.http.get(f"{base}/no-such-path") as r:
            self.assertEqual(r.status, 404)
        body = b'{"object":"whatsapp_business_account","entry":[{"changes":[{"value":'
        self.assertEqual(await self.h.webhook.post(body, signature="sha256=" + "0" * 64), 401)
        self.assertEqual(await self.h.webhook.post(body), 400)
        self.assertEqual(await self.h.webhook.post(webhooks.terminate_webhook(
            harness.PHONE_NUMBER_ID, harness.new_call_id(), caller_name="Nobody Example",
            caller_number="15551239999", status="FAILED")), 200)

    async def test_calls_then_sigterm(self):
        await self.send_junk()

        # 1: audio both ways, the caller hangs up.
        first, first_id = await self.answered_call("Alice Sanitized", "15551232001")

        async def audio_flowed() -> bool:
            session = await self.h.session_for(first)
            return (session is not None and session["speech_stopped"] >= 1
                    and first.received.voiced_seconds() >= 1.0)
        await self.h.wait_until(audio_flowed, AUDIO_TIMEOUT, "audio both ways")
        self.assertEqual(await self.h.caller_hangs_up(first, first_id), 200)
        await self.wait_for_calls(0)

        # 2 and 3 at once; 4 is over MAX_CONCURRENT_CALLS and rejected.
        (second, second_id), (third, third_id) = await asyncio.gather(
            self.answered_call("Bob Sanitized", "15551232002"),
            self.answered_call("Cleo Sanitized", "15551232003"))
        over = self.h.new_caller("Dan Sanitized", "15551232004")
        over_id = await self.h.place_call(over)
        self.assertIsNotNone(await self.h.graph.wait_for_action(over_id, "reject", SETUP_TIMEOUT))

        # 2's Realtime connection is lost (the element reconnects); the AI
        # sends 3 junk and an unknown event.
        await self.control(second, "drop")

        async def reconnected() -> bool:
            named = [s for s in await self.h.sessions() if second.name in (s.get("instructions") or "")]
            return len(named) >= 2 and named[-1]["open"]
        await self.h.wait_until(reconnected, SETUP_TIMEOUT, "the dropped session to reconnect")
        await self.control(third, "send", b"{not json")
        await self.control(third, "send", b'{"type":"session.unheard_of","event_id":"e1"}')
        statuses = await asyncio.gather(self.h.caller_hangs_up(second, second_id),
                                        self.h.caller_hangs_up(third, third_id))
        self.assertEqual(list(statuses), [200, 200])
        await self.wait_for_calls(0)

        # 5: Meta refuses the accept.
        refused = self.h.new_caller("Eve Sanitized", "15551232005")
        refused_id = await self.h.prepare_call(refused)
        self.h.graph.fail("accept", call_id=refused_id)
        self.assertEqual(await self.h.webhook.post(self.h.connect_payload(refused, refused_id)), 200)
        self.assertTrue(await self.h.graph.wait_for(
            lambda: bool(self.h.graph.requests_for(refused_id, "accept")), SETUP_TIMEOUT),
            "no accept was attempted")
        await self.wait_for_calls(0)

        # 6: still up at SIGTERM, ended by the shutdown.
        last, last_id = await self.answered_call("Finn Sanitized", "15551232006")
        await self.assert_clean_exit()
        self.assertEqual(self.h.graph.actions(last_id), ["pre_accept", "accept", "terminate"])


class AssistantUsesToolsAndEndsCalls(SanitizedServer):
    """Two calls in which the AI calls tools, good and bad, then end_call. With
    DATABASE_URL (scripts/test exports one) the tools reach PostgreSQL and the
    calls are recorded; without it they answer errors."""
    tool_calls = ('create_task:{"title":"Sanitizer check","notes":"n\u00e9e"}',
                  'complete_task:{"task_id":"not a number"}',
                  'create_reminder:{"text":"x","remind_at":"yesterday"}',
                  "no_such_tool:{}")
    realtime_args = tuple(arg for call in (*tool_calls, "end_call:{}") for arg in ("--function-call", call))

    async def test_tools_end_call_then_sigterm(self):
        for name, wa_id in (("Gus Sanitized", "15551232007"), ("Hana Sanitized", "15551232008")):
            # A silent caller: the test starts every turn after the greeting's.
            caller = self.h.new_caller(name, wa_id, signal=BurstSignal(CALLER_HZ, bursts=0))
            call_id = await self.h.place_call(caller)
            for answered in range(1, len(self.tool_calls) + 1):
                await self.wait_for_outputs(caller, answered)
                await self.h.wait_until(lambda: self.h.start_reply(caller), SETUP_TIMEOUT,
                                        f"turn {answered + 1} of {name}'s call")
            self.assertIsNotNone(await self.h.graph.wait_for_action(call_id, "terminate", SETUP_TIMEOUT),
                                 f"{name}'s call was not ended by end_call")
            await self.wait_for_calls(0)
        await self.assert_clean_exit()

    async def wait_for_outputs(self, caller: harness.Caller, count: int) -> None:
        """The AI got `count` tool outputs and has finished speaking after the last."""
        async def answered() -> bool:
            session = await self.h.session_for(caller)
            return (session is not None and len(session["function_outputs"]) >= count
                    and not session["response_active"])
        await self.h.wait_until(answered, SETUP_TIMEOUT, f"{count} tool output(s) in {caller.name}'s call")


class RealtimeUnreachable(SanitizedServer):
    """A call rejected because the AI cannot be reached."""
    start_realtime = False

    async def test_reject_then_sigterm(self):
        caller = self.h.new_caller("Ivy Sanitized", "15551232009")
        call_id = await self.h.place_call(caller)
        self.assertIsNotNone(await self.h.graph.wait_for_action(call_id, "reject", SETUP_TIMEOUT + 20))
        await self.wait_for_calls(0)
        await self.assert_clean_exit()


def main() -> int:
    if SERVER is None:
        print("VOICEBRIDGE_ASAN_BUILD is not set: no sanitizer build to test (skipped)")
        return SKIPPED
    problem = check_instrumented(SERVER)
    if problem:
        print(f"VOICEBRIDGE_ASAN_BUILD: {problem}", file=sys.stderr)
        return 1
    result = unittest.main(verbosity=2, exit=False).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
