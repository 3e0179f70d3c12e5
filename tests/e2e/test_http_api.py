"""End to end, with the real servers: chat.toml with its [source.http] turned
on, on two instances. A backend POSTs to instance A's publish API; a native
WebSocket client and a Socket.IO client on instance B receive the message,
and PostgreSQL holds it once. A resend with the same idempotency key, to A
or to B, gets the same id and adds no row. A bad key is 401, an oversize
body 413, both as JSON. Prints the latency from a POST to its delivery on
the other instance (median and p99 over 200 posts).
Needs Redis, Kafka and PostgreSQL (scripts/services/<name> start); skips otherwise."""
import asyncio
import http.client
import json
import os
import re
import secrets
import statistics
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, psql, websockets  # noqa: E402

CHAT = os.path.join(nudge_test.PIPELINES, "chat.toml")
SERVICES = ("redis", "kafka", "postgres")
HTTP_LINE = re.compile(r"taking messages at http://([^/\s]+)/api")


def servers_up():
    return all(nudge_test.service_running(s) for s in SERVICES)


def uuid7():
    """A UUIDv7 (RFC 9562) for now: the idempotency key that every instance maps to the same id."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


class TimedClient(ChatClient):
    """A native client that stamps each live message with its arrival time."""

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "message" and not frame.get("history"):
                    frame["_at"] = time.monotonic()
                    self.messages.append(frame)
                for w in list(self._waiters):
                    w()
        except websockets.ConnectionClosed:
            pass


class SocketIoClient:
    """Socket.IO v5 over Engine.IO v4, WebSocket transport only: enough to see `message` events."""

    def __init__(self, base_url):
        self.url = re.sub(r"^http", "ws", base_url) + "/socket.io/?EIO=4&transport=websocket"
        self.messages = []
        self.ws = None
        self._reader = None

    async def connect(self):
        self.ws = await websockets.connect(self.url, ping_interval=None)
        opened = await self.ws.recv()
        assert opened.startswith("0{"), opened
        await self.ws.send("40")
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                if raw == "2":
                    await self.ws.send("3")  # Engine.IO pong
                elif raw.startswith("42"):
                    event, *args = json.loads(raw[2:])
                    if event == "message":
                        m = json.loads(args[0])
                        if not m.get("history"):
                            self.messages.append(m)
        except websockets.ConnectionClosed:
            pass

    async def close(self):
        await self.ws.close()
        await asyncio.wait([self._reader], timeout=5)


class Api:
    """A backend of the publish API: one keep-alive connection."""

    def __init__(self, address, key):
        host, port = address.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.key = key

    def post(self, room, body, key=None, headers=None):
        h = {"Content-Type": "application/json", "Authorization": f"Bearer {key or self.key}", **(headers or {})}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.conn.request("POST", f"/api/rooms/{room}/messages", body=data, headers=h)
            r = self.conn.getresponse()
            status, text = r.status, r.read().decode()
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
        except (ConnectionError, http.client.HTTPException):
            # A refusal closes the connection, possibly before the whole body was sent.
            self.conn.close()
            raise
        return status, json.loads(text)


@unittest.skipUnless(servers_up(), f"needs {', '.join(SERVICES)}: scripts/services/<name> start")
class HttpApiTest(unittest.TestCase):
    def setUp(self):
        suffix = nudge_test.unique_suffix()
        self.table = f"e2e_http_{suffix}"
        self.room = f"http-{suffix}".replace("_", "-")
        self.key = secrets.token_hex(24)
        self.env = {"NUDGE_RECENT_PREFIX": f"e2e:{suffix}:recent:", "NUDGE_TOPIC": f"e2e.http.{suffix}",
                    "NUDGE_GROUP": f"e2e-http-{suffix}", "NUDGE_TABLE": self.table,
                    "NUDGE_HTTP_LISTEN": "127.0.0.1:0", "NUDGE_API_KEY": self.key}
        self.instances = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for n in self.instances:
            n.kill()
        try:
            psql(f"DROP TABLE IF EXISTS {self.table}")
        except AssertionError:
            pass

    def start(self, name):
        n = NudgeProcess(CHAT, "source.websocket.listen=127.0.0.1:0", "admin.listen=127.0.0.1:0",
                         f"source.websocket.socketio_default_room={self.room}", env=self.env, name=name)
        self.instances.append(n)
        n.wait_started(60)
        m = next((HTTP_LINE.search(line) for line in n.log_lines if HTTP_LINE.search(line)), None)
        self.assertIsNotNone(m, f"{name} does not say where its publish API is:\n{n.log()}")
        n.http_address = m.group(1)
        return n

    def rows(self, ids):
        quoted = ",".join(f"'{i}'" for i in ids)
        try:
            return psql(f"SELECT id FROM {self.table} WHERE id IN ({quoted})")
        except AssertionError:
            return []  # the sink may not have created its table yet

    def wait_rows(self, ids, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(ids)
            if {r[0] for r in rows} >= set(ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.3)

    def test_a_backends_post_reaches_clients_of_another_instance_once_and_a_resend_keeps_its_id(self):
        a, b = self.start("nudge-a"), self.start("nudge-b")
        api_a, api_b = Api(a.http_address, self.key), Api(b.http_address, self.key)

        async def run():
            native = TimedClient(b.ws_url, "watcher")
            await native.connect()
            await native.join(self.room)
            sio = SocketIoClient(b.base_url)
            await sio.connect()
            loop = asyncio.get_running_loop()

            async def post(api, body, **kw):
                return await loop.run_in_executor(None, lambda: api.post(self.room, body, **kw))

            # Warm-up: posts until B's clients see one, so B's fanout subscription is in place.
            deadline = time.monotonic() + 60
            while True:
                status, body = await post(api_a, {"text": "warmup"})
                self.assertEqual(status, 202, body)
                await asyncio.sleep(0.2)
                if any(m["id"] == body["id"] for m in native.messages) and any(
                        m["id"] == body["id"] for m in sio.messages):
                    break
                self.assertLess(time.monotonic(), deadline, "B's clients never saw a post to A")

            # A post, delivered on B to both kinds of client.
            key = uuid7()
            status, body = await post(api_a, {"text": "deploy finished", "sender": "ci", "idempotency_key": key})
            self.assertEqual(status, 202, body)
            first_id = body["id"]
            await native.wait_for(lambda: any(m["id"] == first_id for m in native.messages), 20, "the post on B")
            deadline = time.monotonic() + 20
            while not any(m["id"] == first_id for m in sio.messages) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            got = [m for m in native.messages if m["id"] == first_id]
            self.assertEqual((got[0]["sender"], got[0]["text"], got[0]["room"]), ("ci", "deploy finished", self.room))
            sio_got = [m for m in sio.messages if m["id"] == first_id]
            self.assertEqual(len(sio_got), 1, "the Socket.IO client on B did not get the post once")
            self.assertEqual((sio_got[0]["sender"], sio_got[0]["message"]), ("ci", "deploy finished"))

            # Resends: to A (remembered there: nothing published) and to B (the id derived from the key).
            for api in (api_a, api_b):
                status, body = await post(api, {"text": "deploy finished", "sender": "ci"},
                                          headers={"Idempotency-Key": key})
                self.assertEqual((status, body), (202, {"id": first_id}), "a resend got another id")
            self.assertEqual(len(self.wait_rows([first_id])), 1)
            # The consumer has written everything before the resend to B, and the resend itself.
            status, body = await post(api_b, {"text": "after the resends"})
            self.assertEqual(status, 202, body)
            self.wait_rows([body["id"]])
            self.assertEqual(len(self.rows([first_id])), 1, "the resend was stored twice")

            # Refusals are JSON with a code.
            status, body = await post(api_a, {"text": "x"}, key="not-" + self.key)
            self.assertEqual((status, body["error"]["code"]), (401, "unauthorized"))
            status, body = await post(api_a, {"text": "x" * (70 * 1024)})
            self.assertEqual((status, body["error"]["code"]), (413, "too_large"))

            # Latency from a POST to A until the native client on B has it.
            latencies = []
            for i in range(200):
                text = f"latency {i}"
                t0 = time.monotonic()
                status, body = await post(api_a, {"text": text})
                self.assertEqual(status, 202, body)
                await native.wait_for(lambda: any(m["id"] == body["id"] for m in native.messages[-50:]), 20,
                                      "a post on B")
                arrived = next(m["_at"] for m in reversed(native.messages) if m["id"] == body["id"])
                latencies.append((arrived - t0) * 1000)
            latencies.sort()
            p50 = statistics.median(latencies)
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            print(f"\nPOST to A -> WebSocket delivery on B, 200 posts: median {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"max {latencies[-1]:.1f} ms", flush=True)
            await native.close()
            await sio.close()

        asyncio.run(run())
        self.assertEqual(a.stop(), 0, a.log())
        self.assertEqual(b.stop(), 0, b.log())


if __name__ == "__main__":
    nudge_test.main()
