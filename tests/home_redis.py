"""A real redis-server on 127.0.0.1 for the tests, and the Redis home of the shared suite.

Skips when redis-server (or redis-py) is missing, unless AI_API_REQUIRE_REDIS=1 (CI) makes
that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ai_api.store.state import SharedState

from .homes import closing_states


def require_redis() -> str:
    """The path of redis-server; skips (or fails, in CI) the test when it cannot run."""
    server = shutil.which("redis-server")
    if server is not None and importlib.util.find_spec("redis") is not None:
        return server
    missing = "redis-py not installed: pip install redis"
    if server is None:
        missing = "redis-server not installed: apt-get install redis-server"
    if os.environ.get("AI_API_REQUIRE_REDIS") == "1":
        pytest.fail(f"{missing} (AI_API_REQUIRE_REDIS=1)")
    pytest.skip(missing, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway redis-server without persistence; `stop` and `start` again on the same port."""

    def __init__(self, directory: str, *, password: str | None = None) -> None:
        self.binary = require_redis()
        self.directory = directory
        self.password = password
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        args = ["--save", "", "--appendonly", "no", "--port", str(self.port)]
        args += ["--bind", "127.0.0.1", "--dir", self.directory]
        if self.password:
            args += ["--requirepass", self.password]
        self._process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(250):
            if await self._pong():
                return
            if self._process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        await self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    async def _pong(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            auth = f"AUTH {self.password}\r\n" if self.password else ""
            writer.write(f"{auth}PING\r\n".encode())
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(64), 1.0)
            return b"PONG" in reply or (bool(auth) and b"+OK" in reply)
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()


@contextlib.asynccontextmanager
async def running_redis(*, password: str | None = None) -> AsyncIterator[RedisServer]:
    """A started redis-server, stopped at exit."""
    with tempfile.TemporaryDirectory(prefix="ai-api-redis-") as directory:
        server = RedisServer(directory, password=password)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


@contextlib.asynccontextmanager
async def redis_home() -> AsyncIterator[Callable[[], Awaitable[SharedState]]]:
    """A factory of new `RedisState`s on one fresh server: each is another instance's view."""
    from ai_api.store.redis_state import RedisState

    async with (
        running_redis() as server,
        closing_states(lambda: RedisState(server.url).open()) as factory,
    ):
        yield factory
