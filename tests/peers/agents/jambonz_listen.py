#!/usr/bin/env python3
"""A jambonz `listen`-shaped audio consumer (WebSocket server) for outdial's integration tests.

What it does: accepts WebSocket connections that offer the `audio.jambonz.org` subprotocol,
checks the first text frame (the call's metadata: callSid, from, to, direction, sampleRate
8000|16000|24000, mixType mono), then takes binary L16 little-endian audio at that rate and the
DTMF text frames ({"event":"dtmf","dtmf":"2","duration":"1600"}). Like an app in jambonz's
bidirectional streaming mode it can send binary L16 back (echo, or a WAV resampled to the rate),
`{"type":"killAudio"}` and `{"type":"disconnect"}`. It records the audio it received and writes
a JSON report; the Rust test reads both. It exits 0 unless it crashed.

What it must not do: know outdial's code; it follows jambonz's public listen protocol only.

Usage:
  jambonz_listen.py --port 0 --report r.json [flags]     prints `LISTENING <port>` once listening

Flags:
  --host H                  listen address (127.0.0.1)
  --port P                  listen port; 0 picks a free one (printed)
  --report FILE             the JSON report, rewritten after each connection ends (and on exit)
  --record FILE             the received audio as a 16-bit mono WAV at the stream's sampleRate
  --once                    exit after the first connection ends (or is rejected)
  --echo                    send every binary frame straight back
  --say WAV                 after the metadata, send this WAV resampled to the stream's rate as
                            binary L16, a burst of --chunk-ms frames, faster than real time
  --chunk-ms N              audio per outbound binary frame (20)
  --kill-after-ms N         send {"type":"killAudio"} N ms after the metadata arrived
  --disconnect-after-ms N   send {"type":"disconnect"} N ms after the metadata arrived (the
                            peer should then close the WebSocket)

Report (JSON): {"port", "connections": [conn, ...], "errors": [every conn's errors]} where conn =
  {"path", "headers": {name: value}, "subprotocols_offered": [..], "subprotocol": chosen | null,
   "rejected": null | "why" (then only path, headers, offered, opened and errors),
   "opened": T, "metadata": <first text frame> | null, "metadata_at": T | null,
   "sample_rate": 8000 | 16000 | 24000 | null,
   "audio_in": {"frames", "bytes", "ms", "frame_sizes": {bytes: count}, "first": T | null,
                "last": T | null},
   "text_in": [{"mono", "wall", "msg": <JSON> | "raw": <text>}],
   "dtmf": ["2", ...], "dtmf_events": [{"digit", "duration", "mono", "wall"}],
   "sent": {"audio_frames", "audio_ms", "echoed_frames", "first_audio": T | null,
            "kill_audio": T | null, "disconnect": T | null},
   "closed": T, "close_code", "close_reason", "errors": ["...", ...]}
  where T = {"mono": time.monotonic(), "wall": time.time()}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from http import HTTPStatus

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import agentlib

SUBPROTOCOL = "audio.jambonz.org"
RATES = (8000, 16000, 24000)


def offered(request) -> list[str]:
    out = []
    for value in request.headers.get_all("Sec-WebSocket-Protocol"):
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


class Conn:
    """One listen connection: the checker state and what goes into the report."""

    def __init__(self, args, ws: ServerConnection):
        self.args = args
        self.ws = ws
        req = ws.request
        self.doc = {
            "path": req.path,
            "headers": {k: v for k, v in req.headers.raw_items()},
            "subprotocols_offered": offered(req),
            "subprotocol": ws.subprotocol,
            "rejected": None,
            "opened": agentlib.stamp(),
            "metadata": None,
            "metadata_at": None,
            "sample_rate": None,
            "audio_in": {
                "frames": 0,
                "bytes": 0,
                "ms": 0.0,
                "frame_sizes": {},
                "first": None,
                "last": None,
            },
            "text_in": [],
            "dtmf": [],
            "dtmf_events": [],
            "sent": {
                "audio_frames": 0,
                "audio_ms": 0.0,
                "echoed_frames": 0,
                "first_audio": None,
                "kill_audio": None,
                "disconnect": None,
            },
            "closed": None,
            "close_code": None,
            "close_reason": None,
            "errors": [],
        }
        self.errors = self.doc["errors"]
        self.audio = bytearray()
        self.tasks: list[asyncio.Task] = []
        self.lock = asyncio.Lock()

    def spawn(self, coro) -> None:
        self.tasks.append(asyncio.create_task(coro))

    async def send(self, data) -> None:
        async with self.lock:
            await self.ws.send(data)

    async def send_audio(self, pcm: bytes, echo: bool = False) -> None:
        now = agentlib.stamp()
        await self.send(pcm)
        sent = self.doc["sent"]
        sent["audio_frames"] += 1
        sent["audio_ms"] += len(pcm) / 2 / self.doc["sample_rate"] * 1000.0
        if echo:
            sent["echoed_frames"] += 1
        sent["first_audio"] = sent["first_audio"] or now

    async def say(self, pcm: np.ndarray) -> None:
        data = pcm.astype("<i2").tobytes()
        step = self.doc["sample_rate"] * self.args.chunk_ms // 1000 * 2
        for i in range(0, len(data), step):
            await self.send_audio(data[i : i + step])

    async def control_later(self, ms: int, kind: str, key: str) -> None:
        await asyncio.sleep(ms / 1000.0)
        self.doc["sent"][key] = agentlib.stamp()
        await self.send(json.dumps({"type": kind}))

    def on_metadata(self, msg) -> None:
        self.doc["metadata"] = msg
        self.doc["metadata_at"] = agentlib.stamp()
        if not isinstance(msg, dict):
            self.errors.append("metadata: not a JSON object")
            return
        for key in ("callSid", "from", "to", "direction"):
            if not isinstance(msg.get(key), str) or not msg.get(key):
                self.errors.append(f"metadata: {key} {msg.get(key)!r} is not a non-empty string")
        if msg.get("direction") not in ("inbound", "outbound"):
            self.errors.append(f"metadata: direction {msg.get('direction')!r} is not in/outbound")
        rate = msg.get("sampleRate")
        if type(rate) is not int or rate not in RATES:
            self.errors.append(f"metadata: sampleRate {rate!r} is not one of {list(RATES)}")
            rate = 8000
        self.doc["sample_rate"] = rate
        if msg.get("mixType") != "mono":
            self.errors.append(f"metadata: mixType {msg.get('mixType')!r} is not 'mono'")
        if self.args.say:
            self.spawn(self.say(agentlib.read_wav_at(self.args.say, rate)))
        if self.args.kill_after_ms is not None:
            self.spawn(self.control_later(self.args.kill_after_ms, "killAudio", "kill_audio"))
        if self.args.disconnect_after_ms is not None:
            self.spawn(
                self.control_later(self.args.disconnect_after_ms, "disconnect", "disconnect")
            )

    def on_text(self, text: str, now: dict) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            self.doc["text_in"].append({**now, "raw": text})
            self.errors.append(f"text frame is not JSON: {text[:80]!r}")
            return
        self.doc["text_in"].append({**now, "msg": msg})
        if self.doc["metadata"] is None:
            self.on_metadata(msg)
            return
        if not isinstance(msg, dict) or msg.get("event") != "dtmf":
            self.errors.append(f"text frame after the metadata is not a dtmf event: {text[:80]!r}")
            return
        digit, duration = msg.get("dtmf"), msg.get("duration")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            self.errors.append(f"dtmf: digit {digit!r} is not one DTMF character")
        if not isinstance(duration, str) or not duration.isdigit():
            self.errors.append(f"dtmf: duration {duration!r} is not a decimal string")
        self.doc["dtmf"].append(digit)
        self.doc["dtmf_events"].append({"digit": digit, "duration": duration, **now})

    async def on_binary(self, data: bytes, now: dict) -> None:
        if self.doc["metadata"] is None:
            self.errors.append("binary audio before the metadata text frame")
            return
        if len(data) % 2:
            self.errors.append(f"binary frame of {len(data)} bytes is not whole 16-bit samples")
        ai = self.doc["audio_in"]
        ai["frames"] += 1
        ai["bytes"] += len(data)
        ai["ms"] += len(data) / 2 / self.doc["sample_rate"] * 1000.0
        size = str(len(data))
        ai["frame_sizes"][size] = ai["frame_sizes"].get(size, 0) + 1
        ai["first"] = ai["first"] or now
        ai["last"] = now
        self.audio.extend(data[: len(data) - len(data) % 2])
        if self.args.echo:
            await self.send_audio(data, echo=True)

    def finish(self) -> None:
        self.doc["closed"] = agentlib.stamp()
        self.doc["close_code"] = self.ws.close_code
        self.doc["close_reason"] = self.ws.close_reason
        if self.doc["metadata"] is None:
            self.errors.append("closed before the metadata text frame")


class Listener:
    def __init__(self, args):
        self.args = args
        self.connections: list[dict] = []
        self.audio = bytearray()
        self.rate = None
        self.done = asyncio.Event()

    def write(self) -> None:
        if self.args.report:
            errors = [e for c in self.connections for e in c["errors"]]
            doc = {"port": self.args.port, "connections": self.connections, "errors": errors}
            agentlib.write_json(self.args.report, doc)
        if self.args.record:
            pcm = np.frombuffer(bytes(self.audio), "<i2")
            agentlib.write_wav(self.args.record, pcm, self.rate or 8000)

    def process_request(self, ws: ServerConnection, request):
        protos = offered(request)
        if SUBPROTOCOL in protos:
            return None
        why = f"subprotocol {SUBPROTOCOL} not offered (offered {protos})"
        self.connections.append(
            {
                "path": request.path,
                "headers": {k: v for k, v in request.headers.raw_items()},
                "subprotocols_offered": protos,
                "rejected": why,
                "opened": agentlib.stamp(),
                "errors": [f"rejected: {why}"],
            }
        )
        self.write()
        if self.args.once:
            self.done.set()
        return ws.respond(HTTPStatus.BAD_REQUEST, f"{why}\n")

    async def handler(self, ws: ServerConnection) -> None:
        conn = Conn(self.args, ws)
        self.connections.append(conn.doc)
        if ws.subprotocol != SUBPROTOCOL:
            conn.errors.append(f"subprotocol {ws.subprotocol!r} was chosen, not {SUBPROTOCOL}")
        try:
            async for data in ws:
                now = agentlib.stamp()
                if isinstance(data, bytes):
                    await conn.on_binary(data, now)
                else:
                    try:
                        conn.on_text(data, now)
                    except Exception as e:  # a frame shaped so oddly that a check tripped on it
                        conn.errors.append(f"could not check {data[:80]!r}: {e!r}")
        except ConnectionClosed:
            pass
        finally:
            for t in conn.tasks:
                t.cancel()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            conn.finish()
            self.audio.extend(conn.audio)
            self.rate = self.rate or conn.doc["sample_rate"]
            self.write()
            if self.args.once:
                self.done.set()

    async def run(self) -> None:
        async with serve(
            self.handler,
            self.args.host,
            self.args.port,
            subprotocols=[SUBPROTOCOL],
            process_request=self.process_request,
            max_size=None,
        ) as server:
            self.args.port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.done.set)
            agentlib.announce(self.args.port)
            await self.done.wait()
        self.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--report")
    p.add_argument("--record")
    p.add_argument("--once", action="store_true")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--say")
    p.add_argument("--chunk-ms", type=int, default=20)
    p.add_argument("--kill-after-ms", type=int)
    p.add_argument("--disconnect-after-ms", type=int)
    args = p.parse_args()
    if args.chunk_ms <= 0:
        sys.exit("--chunk-ms must be positive")
    if args.say:
        agentlib.read_wav(args.say)  # fail at start, not mid-call, on a bad file
    asyncio.run(Listener(args).run())


if __name__ == "__main__":
    main()
