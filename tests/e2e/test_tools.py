"""The assistant's tools during real calls, with a real PostgreSQL: what the
fake AI gets back from create_task / list_tasks, whose rows they touch, the
calls row written at the end of a call (transcript, token usage), and a
database outage in the middle of a call.

The callers send silence, so the fake AI's voice activity detection never
ends a turn by itself: turns are the greeting and the ones the test starts
(Harness.start_reply), each answered by the next --function-call.

Uses DATABASE_URL when set (scripts/test exports a throwaway cluster), else
starts a throwaway cluster of its own; the outage test always runs its own
private cluster, which it stops and starts again.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import harness
from fake_meta.caller import BurstSignal
from harness import E2ETestCase
from test_call import SETUP_TIMEOUT

POSTGRES_SH = harness.SOURCE_ROOT / "scripts" / "postgres.sh"
TOOL_TIMEOUT = 15          # from a turn's start to the tool's output at the fake AI
# An outage is known to the server once /health says so; from then on a tool
# fails at once, well before a query would time out (5 s).
OUTAGE_ANSWER_TIMEOUT = 4


def random_number() -> str:
    """A US-looking number of our own, so reruns on one database never meet."""
    return "1555" + str(random.randint(1_000_000, 9_999_999))


def bash(script: str) -> str:
    """Runs bash with scripts/postgres.sh sourced; returns stdout."""
    done = subprocess.run(["bash", "-c", f". {shlex.quote(str(POSTGRES_SH))}; {script}"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"postgres.sh: {script!r} failed: {done.stderr.strip()}")
    return done.stdout.strip()


async def bash_async(script: str) -> str:
    """bash() without blocking the event loop (a call's media runs on it)."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f". {shlex.quote(str(POSTGRES_SH))}; {script}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        raise RuntimeError(f"postgres.sh: {script!r} failed: {err.decode().strip()}")
    return out.decode().strip()


async def psql(url: str, sql: str, *params: str) -> list[list[str]]:
    """Rows of one statement (psql variables :'p1', :'p2'... hold the params)."""
    argv = ["psql", url, "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    for i, value in enumerate(params, 1):
        argv += ["-v", f"p{i}={value}"]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(sql.encode()), 30)
    if process.returncode != 0:
        raise AssertionError(f"psql failed on {sql!r}: {err.decode().strip()}")
    return [line.split("\t") for line in out.decode().splitlines()]


class PrivateCluster:
    """A PostgreSQL cluster of this test only, in a temporary directory."""

    PORT = 5432   # its socket lives in its own directory: no clash with others

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="vb-pg-tools."))
        self.base.chmod(0o755)       # the postgres user must reach the data directory
        self.datadir = self.base / "data"
        self.url = bash(f"vb_pg_url {shlex.quote(str(self.datadir))} {self.PORT}")

    def start(self) -> None:
        bash(f"vb_pg_start {shlex.quote(str(self.datadir))} {self.PORT} throwaway")

    async def start_async(self) -> None:
        await bash_async(f"vb_pg_start {shlex.quote(str(self.datadir))} {self.PORT} throwaway")

    async def stop_async(self) -> None:
        await bash_async(f"vb_pg_stop {shlex.quote(str(self.datadir))}")

    def remove(self) -> None:
        try:
            bash(f"vb_pg_stop {shlex.quote(str(self.datadir))}")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


# The database of the tests that do not stop it: scripts/test's, or our own.
_own_cluster: Optional[PrivateCluster] = None


def setUpModule() -> None:
    global _own_cluster
    if not os.environ.get("DATABASE_URL"):
        _own_cluster = PrivateCluster()
        _own_cluster.start()
        os.environ["DATABASE_URL"] = _own_cluster.url   # the harness passes it to voicebridge


def tearDownModule() -> None:
    if _own_cluster:
        _own_cluster.remove()


def quiet_caller_signal() -> BurstSignal:
    return BurstSignal(500, bursts=0)   # silence: no turn ends by itself


class ToolsTestCase(E2ETestCase):
    """Calls with a silent caller whose turns the test drives."""

    @property
    def database_url(self) -> str:
        return self.server_env.get("DATABASE_URL") or os.environ["DATABASE_URL"]

    async def wait_for_database(self, state: str, timeout: float) -> dict:
        health: dict = {}

        async def reached() -> bool:
            nonlocal health
            health = await self.h.health() or {}
            return health.get("database") == state
        await self.wait_until(reached, timeout, f"/health database {state!r}")
        return health

    async def connected_call(self, name: str, number: str):
        caller = self.h.new_caller(name, number, signal=quiet_caller_signal())
        call_id = await self.h.place_call(caller)
        self.assertTrue(await caller.wait_connected(SETUP_TIMEOUT), caller.states)
        return caller, call_id

    async def session(self, caller) -> dict:
        session = await self.h.session_for(caller)
        self.assertIsNotNone(session, f"no Realtime session for {caller.name}")
        return session

    async def wait_for_outputs(self, caller, count: int) -> list[dict]:
        """The first `count` function outputs the fake AI received, once the
        spoken reply that follows the last one is over."""
        async def answered() -> bool:
            session = await self.h.session_for(caller)
            return (session is not None and len(session["function_outputs"]) >= count
                    and not session["response_active"])
        await self.wait_until(answered, TOOL_TIMEOUT, f"{count} function output(s) from {caller.name}'s call")
        outputs = (await self.session(caller))["function_outputs"]
        self.assertEqual(len(outputs), count, f"more function outputs than scripted calls: {outputs}")
        return [json.loads(output) for output in outputs]

    async def next_turn(self, caller) -> None:
        """Starts the caller's next turn once the current response is over."""
        async def started() -> bool:
            return await self.h.start_reply(caller)
        await self.wait_until(started, TOOL_TIMEOUT, f"a new turn in {caller.name}'s session")

    async def task_titles(self, number: str) -> list[str]:
        rows = await psql(self.database_url,
                          "SELECT title FROM tasks WHERE phone_number = :'p1' ORDER BY id", number)
        return [row[0] for row in rows]


class ToolsInOneCall(ToolsTestCase):
    realtime_args = ("--reply-ms", "1000",
                     "--function-call", 'create_task:{"title":"Buy milk"}',
                     "--function-call", "list_tasks:{}")

    async def test_create_then_list_and_the_calls_row(self):
        number = random_number()
        caller, call_id = await self.connected_call("Grace Example", number)

        # Greeting turn: create_task.
        created, = await self.wait_for_outputs(caller, 1)
        self.assertIs(created.get("ok"), True, created)
        self.assertEqual(created["task"]["title"], "Buy milk")

        # Next turn, same call: list_tasks sees it. The caller's audio by then
        # makes the fake AI report input tokens for that turn.
        async def heard_two_seconds() -> bool:
            return (await self.session(caller))["input_ms"] >= 2000
        await self.wait_until(heard_two_seconds, 10, "2 s of the caller's audio at the fake AI")
        await self.next_turn(caller)
        _, listed = await self.wait_for_outputs(caller, 2)
        self.assertNotIn("error", listed)
        self.assertEqual([task["title"] for task in listed["tasks"]], ["Buy milk"])
        self.assertEqual(listed["tasks"][0]["id"], created["task"]["id"])

        # The row belongs to this caller's number (from the webhook) only.
        rows = await psql(self.database_url,
                          "SELECT phone_number FROM tasks WHERE id = :'p1'", str(created["task"]["id"]))
        self.assertEqual(rows, [[number]])

        # Token usage settles once no response is running: then hang up.
        usage = await self.settled_usage(caller)
        self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        await self.wait_for_no_calls()
        row = await self.calls_row(call_id)
        self.assertEqual(row["direction"], "inbound")
        self.assertEqual(row["phone_number"], number)
        self.assertEqual(row["end_reason"], "caller hung up")
        self.assertTrue(row["answered"], row)
        assistant_lines = [line["text"] for line in row["transcript"] if line["role"] == "assistant"]
        # Two spoken replies, one after each tool's output.
        self.assertEqual(assistant_lines, ["Hello from the fake assistant."] * 2, row["transcript"])
        self.assertGreater(usage[0], 0)
        self.assertGreater(usage[1], 0)
        self.assertEqual((row["input_tokens"], row["output_tokens"]), usage,
                         "the calls row must sum the usage of every response")

    async def settled_usage(self, caller) -> tuple[int, int]:
        """(input, output) tokens the fake AI reported, once two snapshots a
        second apart agree and no response is running."""
        last = None
        for _ in range(20):
            session = await self.session(caller)
            now = (session["input_tokens"], session["output_tokens"])
            if now == last and not session["response_active"]:
                return now
            last = now
            await asyncio.sleep(1)
        self.fail(f"the fake AI's token usage never settled: {last}")

    async def calls_row(self, call_id: str) -> dict:
        sql = ("SELECT json_build_object('direction', direction, 'phone_number', phone_number,"
               " 'end_reason', end_reason, 'answered', answered_at IS NOT NULL, 'transcript', transcript,"
               " 'input_tokens', input_tokens, 'output_tokens', output_tokens)"
               " FROM calls WHERE call_id = :'p1'")
        rows: list[list[str]] = []

        async def written() -> bool:
            nonlocal rows
            rows = await psql(self.database_url, sql, call_id)
            return bool(rows)
        await self.wait_until(written, 10, f"the calls row of {call_id}")
        return json.loads(rows[0][0])


OTHER_NUMBER = random_number()   # the caller whose data another caller goes after


class OtherCallersData(ToolsTestCase):
    realtime_args = ("--reply-ms", "500",
                     "--function-call", "list_tasks:{}",
                     "--function-call",
                     f'create_task:{{"title":"Pay rent","phone_number":"{OTHER_NUMBER}"}}')

    async def test_no_tool_reaches_another_callers_tasks(self):
        await psql(self.database_url,
                   "INSERT INTO tasks (phone_number, title) VALUES (:'p1', 'Buy milk')", OTHER_NUMBER)
        number = random_number()
        caller, call_id = await self.connected_call("Heidi Example", number)

        listed, = await self.wait_for_outputs(caller, 1)
        self.assertEqual(listed.get("total"), 0, listed)
        self.assertEqual(listed.get("tasks"), [], listed)

        await self.next_turn(caller)
        _, refused = await self.wait_for_outputs(caller, 2)
        self.assertIsInstance(refused.get("error"), str, refused)
        self.assertIn("phone_number", refused.get("message", ""), refused)

        self.assertEqual(await self.task_titles(OTHER_NUMBER), ["Buy milk"])
        self.assertEqual(await self.task_titles(number), [])
        self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        await self.wait_for_no_calls()


class DatabaseOutage(ToolsTestCase):
    realtime_args = ("--reply-ms", "1000",
                     "--function-call", 'create_task:{"title":"Water the plants"}',
                     "--function-call", 'create_task:{"title":"Call the plumber"}')
    cluster: PrivateCluster

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = PrivateCluster()
        cls.cluster.start()
        cls.server_env = {"DATABASE_URL": cls.cluster.url}

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.remove()

    async def test_outage_mid_call_then_recovery(self):
        await self.wait_for_database("ok", 30)
        number = random_number()
        caller, call_id = await self.connected_call("Ivan Example", number)
        saved, = await self.wait_for_outputs(caller, 1)
        self.assertIs(saved.get("ok"), True, saved)

        await self.cluster.stop_async()
        health = await self.wait_for_database("down", 20)
        self.assertEqual(health["status"], "degraded")
        self.assertEqual(health["active_calls"], 1)

        # A tool call now is answered "unavailable" at once, and the call goes on.
        heard_before = caller.received.voiced_seconds()
        await self.next_turn(caller)

        async def answered() -> bool:
            return len((await self.session(caller))["function_outputs"]) >= 2
        await self.wait_until(answered, OUTAGE_ANSWER_TIMEOUT, "the tool's answer during the outage")
        _, failed = await self.wait_for_outputs(caller, 2)
        self.assertEqual(failed.get("error"), "unavailable", failed)
        input_before = (await self.session(caller))["input_ms"]
        received_before = caller.received.seconds

        async def audio_flows() -> bool:
            session = await self.session(caller)
            return (session["input_ms"] >= input_before + 1000
                    and caller.received.seconds >= received_before + 1.0)
        await self.wait_until(audio_flows, 15, "audio both ways during the outage")
        # The reply after the error was spoken to the caller.
        self.assertGreater(caller.received.voiced_seconds(), heard_before)
        self.assertEqual(caller.connection_state, "connected")
        self.assertEqual(await self.h.active_calls(), 1)
        self.assertEqual(await self.h.caller_hangs_up(caller, call_id), 200)
        await self.wait_for_no_calls()

        # The database comes back: the server reconnects on its own.
        await self.cluster.start_async()
        health = await self.wait_for_database("ok", 30)
        self.assertEqual(health["status"], "healthy")
        self.assertEqual(await self.task_titles(number), ["Water the plants"])

        later, later_call = await self.connected_call("Judy Example", random_number())
        saved_again, = await self.wait_for_outputs(later, 1)
        self.assertIs(saved_again.get("ok"), True, saved_again)
        self.assertEqual(await self.task_titles(later.wa_id), ["Water the plants"])
        self.assertEqual(await self.h.caller_hangs_up(later, later_call), 200)
        await self.wait_for_no_calls()


if __name__ == "__main__":
    harness.main()
