"""What the soak and the fault runs share: a real `python -m ai_api serve` child, its /proc
figures, a config file with limits too large to reach, and small raw HTTP clients.

Everything listens on and connects to 127.0.0.1. The gateway imports the `src/` beside this
file (through PYTHONPATH), so a worktree's bench runs its own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = VENV_PY if VENV_PY.exists() else Path(sys.executable)
"""The Python of the children (the gateway, the canned upstream): the project's venv's."""
MODEL = "openai/gpt-oss-120b"
"""The model of the canned upstream (`bench/upstream.py`) and of Groq-flavoured fakes."""
FAKE_MODEL = "generic-large"
"""The model an OpenAI-flavoured fake (`ai_api.fakes`, flavor "openai") serves."""
KEY = "gsk_bench_faults_0123456789abcdef"
HUGE = "rpm = 100000000, rpd = 100000000, tpm = 1000000000000, tpd = 1000000000000"
"""Limits no run reaches: every request is still planned, reserved and recorded."""


def use_venv() -> None:
    """Re-run this script with the project's venv (and its `src/`) unless already there."""
    if Path(sys.executable) != PY and os.environ.get("BENCH_NO_REEXEC") != "1":
        env = {**os.environ, "PYTHONPATH": str(SRC), "BENCH_NO_REEXEC": "1"}
        os.execve(str(PY), [str(PY), *sys.argv], env)
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


def raise_fd_limit() -> None:
    """The soft descriptor limit up to the hard one (children inherit it)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provider_toml(name: str, base_url: str, kind: str = "groq", model: str = MODEL) -> str:
    """A provider table: `model` with limits no run reaches, the key in BENCH_KEY (no preset's
    variable, so that no real provider is ever active)."""
    return (
        f'[providers."{name}"]\nkind = "{kind}"\nbase_url = "{base_url}"\n'
        f'api_key_env = "BENCH_KEY"\nmodels = [{{ name = "{model}", {HUGE} }}]\n\n'
    )


def fake_toml(name: str, base_url: str) -> str:
    """A provider table for an OpenAI-flavoured fake upstream at `base_url` (its root)."""
    return provider_toml(name, base_url + "/v1", "openai", FAKE_MODEL)


def status_kb(pid: int, key: str) -> int:
    """A `/proc/PID/status` field in kB (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Gateway:
    """`python -m ai_api serve` in `workdir` with `config` (TOML) and `env` added to a clean
    environment; its log (stderr and stdout) in `workdir/gateway-N.log`."""

    def __init__(self, workdir: Path, config: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config = workdir / "ai-api.toml"
        self.config.write_text('[server]\nhost = "127.0.0.1"\n\n' + config)
        self.extra = env or {}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, limit: float = 30.0) -> float:
        """Start (again, on a new port) and wait for its "listening on" line: seconds taken."""
        self.port = free_port()
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            HOME=str(self.workdir),
            PYTHONPATH=str(SRC),
            PYTHONDONTWRITEBYTECODE="1",
            BENCH_KEY=KEY,
            AI_API_CONFIG=str(self.config),
            AI_API_LEDGER=str(self.workdir / "usage.sqlite3"),
            AI_API_LOG_LEVEL="INFO",
        )
        env.update(self.extra)
        log = self.workdir / f"gateway-{len(self.logs) + 1}.log"
        self.logs.append(log)
        begun = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(PY), "-m", "ai_api", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - begun < limit:
            if "listening on" in log.read_text(errors="replace"):
                return time.monotonic() - begun
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{log.read_text(errors='replace')}")

    def log_text(self) -> str:
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def rss_mb(self) -> float:
        return status_kb(self.pid, "VmRSS") / 1024

    def peak_mb(self) -> float:
        return status_kb(self.pid, "VmHWM") / 1024

    def reset_peak(self) -> None:
        """VmHWM back to the current RSS (Linux: 5 to clear_refs)."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def fds(self) -> int:
        return open_fds(self.pid)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGINT, then SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# Clients


@dataclass(slots=True)
class Reply:
    """What a client received: status, the body's bytes (whole, or the first 4 KiB of a long
    one), whether a stream ended with `[DONE]`, the time taken, and a transport error."""

    status: int = 0
    body: bytes = b""
    done: bool = False
    seconds: float = 0.0
    error: str = ""

    def shape(self) -> str:
        """The answer in a few words: status, error type/code, or the content's length."""
        if self.error:
            return f"no answer ({self.error})"
        text = self.body.decode(errors="replace")
        found = re.search(r'"type":\s*"([^"]+)".{0,80}?"code":\s*"([^"]+)"', text)
        if found is None:
            found = re.search(r'"code":\s*"([^"]+)".{0,80}?"type":\s*"([^"]+)"', text)
        if found is not None:
            where = "in the stream" if self.status == 200 else "JSON"
            return f"{self.status}, error {where} {found.group(1)}/{found.group(2)}"
        return f"{self.status}, {'complete answer' if self.done else 'answer without an end'}"


def chat_body(stream: bool, model: str = MODEL, text: str = "hola") -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    ).encode()


def post_head(path: str, port: int, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


async def chat(port: int, body: bytes, limit: float = 120.0) -> Reply:
    """POST /v1/chat/completions on a new connection (closed after it), read to its end or
    `limit` seconds; a stream is complete when `data: [DONE]` came."""
    begun = time.monotonic()
    reply = Reply()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(post_head("/v1/chat/completions", port, len(body)) + body)
            kept = bytearray()
            while data := await reader.read(1 << 16):
                if len(kept) < 1 << 12:
                    kept += data
                reply.done = reply.done or b"data: [DONE]" in data
            head, _, rest = bytes(kept).partition(b"\r\n\r\n")
            reply.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
            reply.body = rest
            if reply.status == 200 and b'"choices"' in rest and b'chat.completion"' in rest:
                reply.done = True  # a whole answer
    except TimeoutError:
        reply.error = f"nothing more within {limit:g} s"
    except OSError as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    reply.seconds = time.monotonic() - begun
    return reply


async def health_lag(port: int, stop: asyncio.Event, every: float = 0.01) -> list[float]:
    """GET /health every `every` s on one kept connection until `stop` (at most 10 minutes):
    each answer's time. The longest is about the most the gateway's loop was blocked."""
    times: list[float] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    begun = time.monotonic()
    try:
        while not stop.is_set() and time.monotonic() - begun < 600:
            sent = time.monotonic()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            times.append(time.monotonic() - sent)
            await asyncio.sleep(every)
    finally:
        writer.close()
    return times


class LagProbe:
    """`health_lag` in a process of its own, so that whatever this one does (an attacker
    writing, fakes answering) does not delay the probe: `with LagProbe(port) as probe:`, then
    `probe.worst` (seconds) after the block."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.worst = 0.0
        self.count = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> LagProbe:
        self._proc = subprocess.Popen(
            [str(PY), __file__, "health-lag", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # "probing": its connection is open
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate("", timeout=60)
        found = json.loads(out)
        self.worst, self.count = found["worst"], found["count"]


def _probe_main(port: int) -> None:
    """Probe until stdin closes; print the worst /health time and how many were asked."""

    async def run() -> list[float]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        probing = asyncio.create_task(health_lag(port, stop))
        print("probing", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        stop.set()
        return await probing

    times = asyncio.run(run())
    print(json.dumps({"worst": max(times, default=0.0), "count": len(times)}))


def least_squares(points: list[tuple[float, float]]) -> float:
    """The slope of y over x (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def machine() -> str:
    """`date UTC, N cores, Python X, load average L` for the figures' heading (a load above
    the cores means other processes took CPU from the run)."""
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    version = ".".join(map(str, sys.version_info[:3]))
    load = os.getloadavg()[0]
    return f"{now}, {os.cpu_count()} cores, Python {version}, load average {load:.1f}"


if __name__ == "__main__" and sys.argv[1:2] == ["health-lag"]:
    _probe_main(int(sys.argv[2]))
