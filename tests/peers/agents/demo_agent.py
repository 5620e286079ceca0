#!/usr/bin/env python3
"""The demo's AI agent: a tiny Twilio Media Streams agent (WebSocket server) for `make demo`.

What it does: for each call outdial streams to it, it plays a greeting WAV as µ-law `media`,
sends a `mark` named "greeting" after it, and once outdial echoes that mark (the greeting has
played) it echoes the caller's audio back. It prints one line per event, flushed:
  LISTENING <port>
  START call=<callSid> stream=<streamSid> params=<customParameters as JSON>
  MARK <name>            (a mark outdial echoed back)
  DTMF <digit>
  STOP call=<callSid>
  CLOSED code=<close code>

What it must not do: check the protocol (tests/peers/agents/twilio_strict.py does that) or know
outdial's code; it is the smallest agent a user would write against Twilio's protocol.

Usage:
  demo_agent.py [--host 127.0.0.1] [--port 0] [--greeting WAV] [--once]
    --greeting WAV   an 8 kHz WAV (others are resampled) played when the stream starts
    --once           exit after the first call's stream ends
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import agentlib


def say(line: str) -> None:
    print(line, flush=True)


def media(stream_sid: str, payload) -> str:
    if isinstance(payload, bytes):
        payload = payload.decode()
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


async def call(ws: ServerConnection, greeting: bytes) -> None:
    stream_sid = None
    echoing = False
    try:
        async for data in ws:
            if isinstance(data, bytes):
                continue
            msg = json.loads(data)
            event = msg.get("event")
            if event == "start":
                start = msg.get("start", {})
                stream_sid = msg.get("streamSid")
                params = json.dumps(start.get("customParameters", {}))
                say(f"START call={start.get('callSid')} stream={stream_sid} params={params}")
                for i in range(0, len(greeting), 160):
                    await ws.send(media(stream_sid, base64.b64encode(greeting[i : i + 160])))
                mark = {"event": "mark", "streamSid": stream_sid, "mark": {"name": "greeting"}}
                await ws.send(json.dumps(mark))
                echoing = not greeting
            elif event == "media" and echoing:
                await ws.send(media(stream_sid, msg["media"]["payload"]))
            elif event == "mark":
                name = msg.get("mark", {}).get("name")
                say(f"MARK {name}")
                echoing = echoing or name == "greeting"
            elif event == "dtmf":
                say(f"DTMF {msg.get('dtmf', {}).get('digit')}")
            elif event == "stop":
                say(f"STOP call={msg.get('stop', {}).get('callSid')}")
    except (ConnectionClosed, ValueError, KeyError) as e:
        say(f"ERROR {e!r}")
    say(f"CLOSED code={ws.close_code}")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--greeting")
    p.add_argument("--once", action="store_true")
    args = p.parse_args()
    greeting = b""
    if args.greeting:
        greeting = agentlib.ulaw_encode(agentlib.read_wav_at(args.greeting, 8000))
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await call(ws, greeting)
        if args.once:
            done.set()

    async with serve(handler, args.host, args.port, max_size=None) as server:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        agentlib.announce(server.sockets[0].getsockname()[1])
        await done.wait()


if __name__ == "__main__":
    asyncio.run(main())
