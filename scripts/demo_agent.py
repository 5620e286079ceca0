#!/usr/bin/env python3
"""make demo's AI voice agent: a small Twilio Media Streams agent (websockets, from .venv).

For each stream it prints what it sees, one line each: the `start` (call SID, who answered,
the contact's name), the echo of its mark once its greeting has played, the keys the person
pressed. On `start` it sends its greeting (raw 8 kHz mu-law, --greeting) as `media` in 640 ms
chunks, faster than real time, followed by a mark; it then echoes what the person says.
When the person presses a key (or --max-secs after `start`), it hangs the call up the way
agents built for Twilio do: POST {--control}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json
with Status=completed, Basic auth (the AccountSid, the API key in $DEMO_API_KEY).

Usage: demo_agent.py --greeting FILE.ulaw --control http://127.0.0.1:PORT [--port 0] [--max-secs 10]
Prints "LISTENING <port>" once listening.
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import urllib.parse
import urllib.request

import websockets


def log(line: str) -> None:
    print(f"agent: {line}", flush=True)


def hang_up(control: str, account: str, call: str, key: str) -> str:
    url = f"{control.rstrip('/')}/2010-04-01/Accounts/{account}/Calls/{call}.json"
    body = urllib.parse.urlencode({"Status": "completed"}).encode()
    req = urllib.request.Request(url, data=body, method="POST")
    token = base64.b64encode(f"{account}:{key}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status = json.loads(resp.read().decode()).get("status")
            return f"HTTP {resp.status}, call {status}"
    except Exception as e:  # the demo shows it; the call ends anyway when the person hangs up
        return f"failed: {e}"


async def stream(ws, args) -> None:
    start = None
    hung_up = False

    async def end_call(reason: str) -> None:
        nonlocal hung_up
        if hung_up or start is None:
            return
        hung_up = True
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None,
            hang_up,
            args.control,
            start["accountSid"],
            start["callSid"],
            os.environ.get("DEMO_API_KEY", ""),
        )
        log(f"{reason}: hung up through Twilio-style call control ({result})")

    timer = None
    async for text in ws:
        if not isinstance(text, str):
            continue
        msg = json.loads(text)
        event = msg.get("event")
        if event == "connected":
            log("socket open (connected) while the call rings")
        elif event == "start":
            start = msg["start"]
            params = start.get("customParameters", {})
            log(
                f"start: call {start['callSid']}, answered by {params.get('AnsweredBy')}, "
                f"contact {params.get('name')!r} ({params.get('to_number')})"
            )
            with open(args.greeting, "rb") as f:
                greeting = f.read()
            sid = msg["streamSid"]
            for i in range(0, len(greeting), 5120):
                chunk = base64.b64encode(greeting[i : i + 5120]).decode()
                await ws.send(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": chunk}}))
            await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "greeting"}}))
            timer = asyncio.create_task(asyncio.sleep(args.max_secs))
            timer.add_done_callback(
                lambda t: asyncio.ensure_future(end_call(f"{args.max_secs} s passed"))
                if not t.cancelled()
                else None
            )
        elif event == "media" and start is not None:
            await ws.send(
                json.dumps(
                    {"event": "media", "streamSid": msg["streamSid"], "media": {"payload": msg["media"]["payload"]}}
                )
            )
        elif event == "mark":
            log(f"mark {msg['mark']['name']!r} echoed: the greeting has played")
        elif event == "dtmf":
            log(f"the person pressed {msg['dtmf']['digit']}")
            await end_call("key pressed")
        elif event == "stop":
            log("stop: the call is over")
            break
    if timer is not None:
        timer.cancel()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--greeting", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-secs", type=float, default=10.0)
    args = p.parse_args()

    async def handler(ws):
        try:
            await stream(ws, args)
        except websockets.ConnectionClosed:
            pass

    async with websockets.serve(handler, "127.0.0.1", args.port) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
