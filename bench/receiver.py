#!/usr/bin/env python3
"""A minimal webhook receiver for the benchmarks: HTTP/1.1 with keep-alive,
no signature check, as little work per request as Python allows.

  python3 bench/receiver.py 127.0.0.1 18192

POST to a path starting with /fail is answered 500 (the delivery is retried
later); any other POST 204. GET /stats answers {"ok": n, "fail": n}, the
requests answered so far. Listens on the address given (127.0.0.1 in every
benchmark); stops on SIGTERM or SIGINT.
"""

import asyncio
import json
import signal
import sys

counts = {"ok": 0, "fail": 0}

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
FAILED = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"


class Webhook(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            total = end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            method, path = head.split(" ", 2)[:2]
            if method == "GET" and path == "/stats":
                body = json.dumps(counts).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            elif path.startswith("/fail"):
                counts["fail"] += 1
                self.transport.write(FAILED)
            else:
                counts["ok"] += 1
                self.transport.write(NO_CONTENT)


async def main(host, port):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(Webhook, host, port, backlog=1024)
    async with server:
        await stop


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
