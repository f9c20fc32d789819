"""A TCP proxy in front of PostgreSQL that the chaos run can cut: the database "goes away" for a while."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    """Forwards ``127.0.0.1:port`` to the database; ``cut(seconds)`` drops every connection and refuses new
    ones until the time is up, as a database restart or a network partition would."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.down = False
        self.links: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        """Listen on ``port``."""
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.links.discard(writer)
            writer.close()

    async def cut(self, seconds: float) -> None:
        """Drop every open connection and refuse new ones for ``seconds``."""
        self.down = True
        for w in list(self.links):
            w.close()
        self.links.clear()
        await asyncio.sleep(seconds)
        self.down = False

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
        for w in list(self.links):
            w.close()
