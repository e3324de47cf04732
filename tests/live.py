"""Real server processes for tests that need real commits and real concurrency."""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server at {base_url} exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {base_url} did not become healthy in {timeout} s")


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def uvicorn_servers(count: int, env: dict[str, str]) -> Iterator[list[LiveServer]]:
    """Start `count` uvicorn processes of the app on free loopback ports."""
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    logs: list[Path] = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
            # Server logs go to a file (shown by `server_log`), not into the test's output.
            log = tempfile.NamedTemporaryFile(prefix=f"uvicorn-{port}-", suffix=".log", delete=False)  # noqa: SIM115
            process = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
                [*command, "--log-level", env.get("LOG_LEVEL", "warning").lower()],
                cwd=PROJECT_ROOT,
                env={**os.environ, "LOG_LEVEL": "WARNING", **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            logs.append(Path(log.name))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_until_healthy(url, process)
        yield [LiveServer(*server) for server in zip(urls, processes, logs, strict=True)]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@asynccontextmanager
async def listening(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server for `handler` (a test proxy's) on a free loopback port; yields the port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
