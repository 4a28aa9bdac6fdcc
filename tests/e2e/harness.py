"""End-to-end harness: runs fake-realtime, the fake Graph API and voicebridge,
plays WhatsApp callers against them, and cleans everything up.

Processes get PR_SET_PDEATHSIG so none outlives the test process, and are
killed in `stop()` in any case. Their logs go to
<build>/meson-logs/e2e/<test id>/ and are printed when a test fails.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
import unittest
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Union

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "doubles"))

import aiohttp  # noqa: E402

from fake_meta import webhooks  # noqa: E402
from fake_meta.caller import Caller  # noqa: E402
from fake_meta.graph_api import FakeGraphApi  # noqa: E402

SOURCE_ROOT = Path(os.environ.get("VOICEBRIDGE_SOURCE_ROOT", HERE.parent.parent))
BUILD_ROOT = Path(os.environ.get("VOICEBRIDGE_BUILD_ROOT", SOURCE_ROOT / "build"))
# Another build of the server (e.g. with sanitizers) may stand in for this one.
SERVER_BINARY = Path(os.environ.get("VOICEBRIDGE_SERVER", BUILD_ROOT / "src/voicebridge"))

VERIFY_TOKEN = "e2e-verify-token"
APP_SECRET = "e2e-app-secret"
ACCESS_TOKEN = "e2e-graph-token"
PHONE_NUMBER_ID = "106540352242922"
OPENAI_API_KEY = "sk-e2e-test"

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_call_id() -> str:
    return "wacid." + uuid.uuid4().hex.upper()


class ManagedProcess:
    """A child process whose stdout/stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.process: Optional[asyncio.subprocess.Process] = None
        self.killed = False          # needed SIGKILL after SIGTERM
        self.first_line = ""
        self._drain: Optional[asyncio.Task] = None

    async def start(self, *, read_first_line: bool = False, timeout: float = 10) -> None:
        if not Path(self.argv[0]).exists():
            raise FileNotFoundError(f"{self.name}: {self.argv[0]} does not exist (not built?)")
        self._log = open(self.log_path, "wb")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if read_first_line else self._log,
            stderr=self._log, preexec_fn=_die_with_parent)
        if read_first_line:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            self.first_line = line.decode().strip()
            self._log.write(line)
            self._log.flush()
            self._drain = asyncio.ensure_future(self._copy_stdout())

    async def _copy_stdout(self) -> None:
        while chunk := await self.process.stdout.read(4096):
            self._log.write(chunk)
            self._log.flush()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, grace: float = 8) -> Optional[int]:
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except asyncio.TimeoutError:
                await self._save_backtrace()
                self.process.kill()
                self.killed = True
                await self.process.wait()
        if self._drain:
            await asyncio.gather(self._drain, return_exceptions=True)
        self._log.close()
        return self.process.returncode

    async def _save_backtrace(self) -> None:
        """Why did it hang? All threads' stacks next to the log, if gdb exists."""
        if not shutil.which("gdb"):
            return
        path = self.log_path.with_suffix(".hang-backtrace.txt")
        with open(path, "wb") as out:
            gdb = await asyncio.create_subprocess_exec(
                "gdb", "-p", str(self.pid), "-batch", "-ex", "thread apply all bt",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT)
            try:
                await asyncio.wait_for(gdb.wait(), 30)
            except asyncio.TimeoutError:
                gdb.kill()
                await gdb.wait()
        self._log.write(f"\n[harness] no exit {self.name} after SIGTERM; backtrace in {path}\n".encode())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Harness:
    """Everything one test needs: fake Graph API, fake-realtime, voicebridge."""

    def __init__(self, test_id: str, *, realtime_args: tuple[str, ...] = (),
                 start_realtime: bool = True, env: Optional[dict[str, Optional[str]]] = None,
                 log_dir: Optional[Path] = None):
        self.test_id = test_id
        self.realtime_args = realtime_args
        self.start_realtime = start_realtime
        self.env_overrides = env or {}
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", test_id)
        self.log_dir = log_dir or BUILD_ROOT / "meson-logs" / "e2e" / safe
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.graph = FakeGraphApi(ACCESS_TOKEN, PHONE_NUMBER_ID)
        self.realtime: Optional[ManagedProcess] = None
        self.server: Optional[ManagedProcess] = None
        self.realtime_url = ""
        self.port = 0
        self.webhook: Optional[webhooks.WebhookSender] = None
        self.callers: list[Caller] = []
        self.http: Optional[aiohttp.ClientSession] = None

    # ---- lifecycle -----------------------------------------------------------------
    def server_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("G_MESSAGES_DEBUG", "voicebridge")   # the server's info/debug lines
        env.update({
            "PORT": str(self.port),
            "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            "WHATSAPP_GRAPH_URL": self.graph.base_url(),
            "OPENAI_API_KEY": OPENAI_API_KEY,
            "OPENAI_REALTIME_URL": self.realtime_url,
            "OPENAI_REALTIME_MODEL": "gpt-realtime",
            "OPENAI_VOICE": "marin",
            "ASSISTANT_INSTRUCTIONS": "You are the voicebridge end-to-end test assistant.",
            "MAX_CONCURRENT_CALLS": "10",
            "CALL_SETUP_TIMEOUT_S": "10",
            "WEBHOOK_MAX_AGE_S": "60",
            # A call still up at SIGTERM is terminated after this drain.
            "DRAIN_TIMEOUT_S": "1",
        })
        for name, value in self.env_overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    async def start(self) -> None:
        # No keep-alive: the server's fd count must not include our idle connections.
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                          connector=aiohttp.TCPConnector(force_close=True))
        await self.graph.start()
        if self.start_realtime:
            self.realtime = ManagedProcess(
                "fake-realtime",
                [str(BUILD_ROOT / "tests/doubles/fake-realtime"), "--api-key", OPENAI_API_KEY,
                 *self.realtime_args],
                self.log_dir / "fake-realtime.log", dict(os.environ))
            await self.realtime.start(read_first_line=True)
            if not self.realtime.first_line.startswith("ws://127.0.0.1:"):
                raise RuntimeError(f"fake-realtime printed {self.realtime.first_line!r}")
            self.realtime_url = self.realtime.first_line
        else:
            # Nothing listens there: the Realtime session cannot be opened.
            self.realtime_url = f"ws://127.0.0.1:{free_port()}/v1/realtime"
        self.port = free_port()
        self.webhook = webhooks.WebhookSender(f"{self.base_url}/webhook", APP_SECRET)
        self.server = ManagedProcess("voicebridge", [str(SERVER_BINARY)],
                                     self.log_dir / "voicebridge.log", self.server_env())
        await self.server.start()
        await self.wait_until(self._healthy, 20, "voicebridge /health to answer")

    async def _healthy(self) -> bool:
        if not self.server.running:
            raise AssertionError(f"voicebridge exited with {self.server.process.returncode}")
        try:
            return (await self.health()) is not None
        except aiohttp.ClientError:
            return False

    async def stop(self) -> dict[str, Optional[int]]:
        """Stops everything (the server first, as its callers may still be on
        the line); returns the exit codes."""
        codes: dict[str, Optional[int]] = {}
        for process in (self.server, self.realtime):
            if process:
                codes[process.name] = await process.stop()
        for caller in self.callers:
            await caller.hang_up()
        await self.graph.stop()
        if self.http:
            await self.http.close()
        return codes

    def dump_logs(self, tail_lines: int = 200) -> None:
        for process in (self.server, self.realtime):
            if process:
                lines = process.log_text().splitlines()[-tail_lines:]
                sys.stderr.write(f"\n===== {process.name} log ({process.log_path}), "
                                 f"last {len(lines)} lines =====\n")
                sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.write("===== Graph API requests =====\n")
        for r in self.graph.requests:
            sys.stderr.write(f"{r.status} {r.path} action={r.action} call_id={r.call_id} "
                             f"response={json.dumps(r.response)[:300]}\n")
        for error in self.graph.hook_errors:
            sys.stderr.write(f"caller hook error: {error!r}\n")

    # ---- HTTP helpers ------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def health(self) -> Optional[dict]:
        async with self.http.get(f"{self.base_url}/health") as response:
            if response.status != 200:
                return None
            return await response.json(content_type=None)

    async def active_calls(self) -> int:
        return int((await self.health())["active_calls"])

    async def sessions(self) -> list[dict]:
        if not self.realtime:
            return []
        http_url = self.realtime_url.replace("ws://", "http://").split("/v1/")[0]
        async with self.http.get(f"{http_url}/_test/sessions") as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def session_for(self, caller: Caller) -> Optional[dict]:
        """The fake AI session whose instructions carry the caller's profile name."""
        matches = [s for s in await self.sessions() if caller.name in (s.get("instructions") or "")]
        return matches[-1] if matches else None

    async def send_to_session(self, caller: Caller, text: str) -> None:
        """Makes the fake AI send `text` as one WebSocket text frame to the caller's session."""
        sessions = await self.sessions()
        indexes = [i for i, s in enumerate(sessions) if caller.name in (s.get("instructions") or "")]
        if not indexes:
            raise AssertionError(f"no Realtime session carries {caller.name!r}")
        http_url = self.realtime_url.replace("ws://", "http://").split("/v1/")[0]
        async with self.http.post(f"{http_url}/_test/sessions/{indexes[-1]}/send", data=text) as response:
            response.raise_for_status()

    async def start_reply(self, caller: Caller) -> bool:
        """Makes the fake AI start a new turn in the caller's session now, as
        if the caller had finished speaking (the next scripted function call,
        if any is left). False while a response is still in progress."""
        sessions = await self.sessions()
        indexes = [i for i, s in enumerate(sessions) if caller.name in (s.get("instructions") or "")]
        if not indexes:
            raise AssertionError(f"no Realtime session carries {caller.name!r}")
        http_url = self.realtime_url.replace("ws://", "http://").split("/v1/")[0]
        async with self.http.post(f"{http_url}/_test/sessions/{indexes[-1]}/reply") as response:
            if response.status == 409:
                return False
            response.raise_for_status()
            return True

    async def wait_until(self, predicate: Callable[[], Union[bool, Awaitable[bool]]],
                         timeout: float, what: str, interval: float = 0.1) -> None:
        """Polls `predicate` until true; fails the test with `what` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(interval)

    # ---- calls ---------------------------------------------------------------------------
    def new_caller(self, name: str, wa_id: str, **kwargs: Any) -> Caller:
        caller = Caller(name, wa_id, **kwargs)
        self.callers.append(caller)
        return caller

    def connect_payload(self, caller: Caller, call_id: str, *, timestamp: Optional[float] = None) -> dict:
        return webhooks.connect_webhook(PHONE_NUMBER_ID, call_id, caller.offer_sdp,
                                        caller_name=caller.name, caller_number=caller.wa_id,
                                        timestamp=timestamp)

    def terminate_payload(self, caller: Caller, call_id: str, **fields: Any) -> dict:
        return webhooks.terminate_webhook(PHONE_NUMBER_ID, call_id, caller_name=caller.name,
                                          caller_number=caller.wa_id, **fields)

    async def prepare_call(self, caller: Caller, call_id: Optional[str] = None) -> str:
        """Creates the caller's offer and makes the call known to the fake Graph API,
        whose pre_accept/accept hands the answer to the caller and whose
        terminate/reject hangs the caller up (as Meta ends the user's call)."""
        call_id = call_id or new_call_id()
        if not caller.offer_sdp:
            await caller.make_offer()

        async def on_answer(_call_id: str, sdp: str) -> None:
            await caller.apply_answer(sdp)

        async def on_end(_call_id: str, _action: str) -> None:
            await caller.hang_up()
        self.graph.expect_call(call_id, on_answer=on_answer, on_end=on_end)
        return call_id

    async def place_call(self, caller: Caller, call_id: Optional[str] = None) -> str:
        """A WhatsApp user calls: offer, connect webhook (must get 200)."""
        call_id = await self.prepare_call(caller, call_id)
        status = await self.webhook.post(self.connect_payload(caller, call_id))
        if status != 200:
            raise AssertionError(f"connect webhook for {call_id} got HTTP {status}")
        return call_id

    async def caller_hangs_up(self, caller: Caller, call_id: str, duration: int = 5) -> int:
        """The user ends the call: Meta sends a terminate webhook."""
        await caller.hang_up()
        now = time.time()
        return await self.webhook.post(self.terminate_payload(
            caller, call_id, status="COMPLETED", start_time=now - duration, end_time=now,
            duration=duration))

    # ---- process resources --------------------------------------------------------------
    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.server.pid}/fd"))

    def call_resources(self) -> tuple[int, int]:
        """(fds, threads) of the server, leaving out what is not per call: idle
        keep-alive connections to the Graph API (libsoup's pool, bounded per
        host) and webhook/health connections our client already closed (libsoup
        3.2 keeps those in CLOSE_WAIT; test_webhooks checks that separately)."""
        pooled = f"-> 127.0.0.1:{self.graph.port} state 01"
        closed_by_client = f"tcp 127.0.0.1:{self.port} -> "
        not_per_call = [t for t in self.fd_targets()
                        if t.endswith(pooled) or (closed_by_client in t and t.endswith("state 08"))]
        return self.fd_count() - len(not_per_call), self.thread_count()

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.server.pid}/task"))

    def fd_targets(self) -> list[str]:
        """What each fd points to; sockets described by their addresses."""
        sockets = _socket_table()
        targets = []
        for fd in os.listdir(f"/proc/{self.server.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.server.pid}/fd/{fd}")
            except OSError:
                continue
            inode = re.match(r"socket:\[(\d+)\]", target)
            if inode and inode.group(1) in sockets:
                target += " " + sockets[inode.group(1)]
            targets.append(target)
        return sorted(targets)


def _socket_table() -> dict[str, str]:
    """inode -> "proto local -> remote state" from /proc/net (this namespace)."""
    def address(hex_address: str) -> str:
        host, port = hex_address.split(":")
        if len(host) == 8:
            host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host)[::-1])
        else:
            raw = bytes.fromhex(host)
            host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        return f"{host}:{int(port, 16)}"
    table = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as entries:
                next(entries)
                for line in entries:
                    fields = line.split()
                    table[fields[9]] = (f"{proto} {address(fields[1])} -> {address(fields[2])} "
                                        f"state {fields[3]}")
        except (OSError, StopIteration):
            continue
    return table


class E2ETestCase(unittest.IsolatedAsyncioTestCase):
    """Starts a fresh Harness per test; prints the logs when the test fails."""

    realtime_args: tuple[str, ...] = ()
    start_realtime = True
    server_env: dict[str, Optional[str]] = {}

    test_failed = False

    def _callTestMethod(self, method) -> None:
        # tearDown cannot see whether the test failed (unittest resets the flag
        # per test part), so note it here to decide whether to print the logs.
        try:
            super()._callTestMethod(method)
        except BaseException:
            self.test_failed = True
            raise

    async def asyncSetUp(self) -> None:
        # unittest runs the loop in debug mode; its overhead and slow-callback
        # warnings only disturb five real-time audio calls in one process.
        asyncio.get_running_loop().set_debug(False)
        self.h = Harness(self.id(), realtime_args=self.realtime_args,
                         start_realtime=self.start_realtime, env=self.server_env)
        try:
            await self.h.start()
        except BaseException:
            self.h.dump_logs()
            await self.h.stop()
            raise

    async def asyncTearDown(self) -> None:
        calls_left: Optional[int] = 0
        if self.h.server and self.h.server.running:
            try:
                calls_left = await self.h.active_calls()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                calls_left = None        # not answering: hung
        codes = await self.h.stop()
        clean_exit = codes.get("voicebridge") == 0
        if self.test_failed or not clean_exit:
            self.h.dump_logs()
        # Shutting down with calls still up is test_call's shutdown test; here
        # only an idle server must exit cleanly.
        if not (calls_left and self.h.server.killed):
            state = "not answering /health" if calls_left is None else f"{calls_left} call(s) up"
            self.assertTrue(clean_exit, f"voicebridge exited with {codes.get('voicebridge')} "
                            f"on SIGTERM ({state}; see its log and any *hang-backtrace.txt "
                            f"in {self.h.log_dir})")

    async def wait_until(self, predicate, timeout: float, what: str) -> None:
        await self.h.wait_until(predicate, timeout, what)

    async def resource_baseline(self, samples: int = 3, interval: float = 0.5) -> dict:
        """The server's per-call resources once they stop changing between samples."""
        last, stable = None, 0
        for _ in range(40):
            now = self.h.call_resources()
            stable = stable + 1 if now == last else 0
            if stable >= samples - 1:
                break
            last = now
            await asyncio.sleep(interval)
        return {"fds": now[0], "threads": now[1], "fd_targets": self.h.fd_targets()}

    async def assert_back_to_baseline(self, baseline: dict, timeout: float = 20) -> None:
        """Fds and threads of the server drop back to (at most) the baseline."""
        def back() -> bool:
            fds, threads = self.h.call_resources()
            return fds <= baseline["fds"] and threads <= baseline["threads"]
        try:
            await self.wait_until(back, timeout, "fds and threads back to baseline")
        except AssertionError:
            fds, threads = self.h.call_resources()
            leaked = sorted(set(self.h.fd_targets()) - set(baseline["fd_targets"]))
            self.fail(f"fds {fds} (baseline {baseline['fds']}), threads {threads} "
                      f"(baseline {baseline['threads']}); new fd targets: {leaked}")

    async def wait_for_no_calls(self, timeout: float = 15) -> None:
        async def no_calls() -> bool:
            return await self.h.active_calls() == 0
        await self.wait_until(no_calls, timeout, "/health active_calls == 0")


def main() -> None:
    unittest.main(verbosity=2)
