"""A small TCP proxy between the replicas and Redis, for network faults on that path.

    python -m loadtest.stack.embedded.linkproxy --listen 127.0.0.1:7001 --to 127.0.0.1:6379 \
        --control 127.0.0.1:7002

It forwards bytes both ways. Its control port takes one JSON object per line:
``{"latency_ms": 50}`` delays every chunk sent towards the store by that much
(order kept); ``{"reset": true}`` aborts every open connection with a TCP
reset and resets new ones until cleared; ``{"clear": true}`` heals the link.
It answers each command with ``{"ok": true, ...state}``.

Written for this harness rather than taken from a package: Toxiproxy is not
packaged for Debian 12 or on PyPI, and this is the one behaviour we need.
It runs as its own process (plain asyncio, no gevent) so that a stall in the
harness cannot stall the app's traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys

CHUNK = 65536


class Link:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.latency = 0.0
        self.resetting = False
        self.open: set[asyncio.StreamWriter] = set()

    def state(self) -> dict:
        return {"latency_ms": self.latency * 1000, "reset": self.resetting,
                "connections": len(self.open) // 2}

    async def serve_client(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        if self.resetting:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        self.open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer, delayed=True),
                                 self._pipe(up_reader, writer, delayed=False))
        finally:
            for w in (writer, up_writer):
                self.open.discard(w)
                w.close()

    async def _pipe(self, reader, writer, delayed: bool) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                try:
                    await writer.drain()
                except OSError:
                    break

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((loop.time() + (self.latency if delayed else 0.0), data))
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, None))
            await sender
            try:
                writer.write_eof()
            except (OSError, RuntimeError):
                pass

    def reset_all(self) -> None:
        for writer in list(self.open):
            _abort(writer)

    async def serve_control(self, reader, writer) -> None:
        try:
            while line := await reader.readline():
                try:
                    command = json.loads(line)
                except ValueError:
                    writer.write(b'{"ok": false, "error": "not JSON"}\n')
                    continue
                if command.get("clear"):
                    self.latency, self.resetting = 0.0, False
                if "latency_ms" in command:
                    self.latency = max(0.0, float(command["latency_ms"])) / 1000
                if command.get("reset"):
                    self.resetting = True
                    self.reset_all()
                writer.write((json.dumps({"ok": True, **self.state()}) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a broken network would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _main(args) -> None:
    link = Link(_address(args.to))
    host, port = _address(args.listen)
    chost, cport = _address(args.control)
    server = await asyncio.start_server(link.serve_client, host, port)
    control = await asyncio.start_server(link.serve_control, chost, cport)
    print(f"linkproxy: {args.listen} -> {args.to}, control on {args.control}", flush=True)
    async with server, control:
        await asyncio.gather(server.serve_forever(), control.serve_forever())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stack.embedded.linkproxy",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--to", required=True, metavar="HOST:PORT")
    parser.add_argument("--control", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"linkproxy: error: {exc}", file=sys.stderr)
        return 2
    return 0


def send_command(control: tuple[str, int], command: dict, timeout: float = 5.0) -> dict:
    """Send one command to a running proxy and return its answer."""
    with socket.create_connection(control, timeout=timeout) as sock:
        sock.sendall(json.dumps(command).encode() + b"\n")
        data = sock.makefile("rb").readline()
    return json.loads(data) if data else {"ok": False, "error": "no answer"}


if __name__ == "__main__":
    sys.exit(main())
