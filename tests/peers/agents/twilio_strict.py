#!/usr/bin/env python3
"""A strict Twilio Media Streams agent (WebSocket server) for outdial's integration tests.

What it does: accepts Media Streams connections (websockets), checks every message against the
shapes Twilio sends (connected, start, media, dtmf, mark, stop: every field, the SIDs, the
sequence numbers, chunks and timestamps, the order), talks back like an AI agent would (plays a
WAV as a faster-than-real-time burst of `media` with `mark`s, echoes, `clear`, closes, hangs the
call up over Twilio's REST call-control API) and judges the mark echoes against the audio it
queued. It writes everything it saw and every violation into a JSON report; the Rust test reads
the report. It exits 0 unless it crashed.

What it must not do: know outdial's code. It follows Twilio's public protocol only, so it fails
outdial where a real agent built for Twilio would break.

Usage:
  twilio_strict.py --port 0 --report r.json [flags]     prints `LISTENING <port>` once listening

Flags:
  --host H                 listen address (127.0.0.1)
  --port P                 listen port; 0 picks a free one (printed)
  --report FILE            the JSON report, rewritten after each connection ends (and on exit)
  --record FILE            the inbound audio (µ-law decoded) as an 8 kHz 16-bit WAV
  --once                   exit after the first connection ends
  --say WAV                on `start`, send this WAV (8 kHz; others are resampled) as µ-law
                           `media`, as one burst faster than real time
  --chunk-ms N             audio per outbound `media` message (20; 640 works too)
  --marks each|end|none    a `mark` after every chunk, after the whole WAV, or none (each)
  --echo                   send every inbound payload straight back as `media`
  --clear-after-ms N       send `clear` N ms after the first outbound `media`
  --close-after-ms N       close the WebSocket (1000) N ms after `start`
  --hangup-rest URL        base URL of the call-control API (e.g. http://127.0.0.1:8089)
  --hangup-after-ms N      POST URL/2010-04-01/Accounts/{AC}/Calls/{CA}.json Status=completed,
                           Basic auth (accountSid from `start`, --api-key), N ms after `start`
  --api-key KEY            password for that Basic auth
  --expect-header N=V      the upgrade request must carry header N with value V, else 403
                           (repeatable)
  --mark-tolerance-ms N    how early a mark echo may come before its audio has played (80)
  --clear-tolerance-ms N   how soon after a `clear` the pending marks must all come back (500)

Mark timing model: outdial is assumed to start playing a chunk when it arrives and to play in
real time, so each sent chunk moves a play-out cursor to max(cursor, now) + chunk duration. A
mark's echo must not arrive before (cursor when the mark was sent) - tolerance. A `clear` resets
the cursor to the clear's time; marks pending then must all come back within
--clear-tolerance-ms, in order, and are exempt from the "too early" rule.

Report (JSON): {"port", "connections": [conn, ...], "errors": [every conn's errors]} where conn =
  {"path", "headers": {name: value}, "rejected": null | "why" (then only path, headers,
   opened and errors, which names the rejection too), "opened": T, "closed": T,
   "closed_by": "peer" | "agent", "close_code", "close_reason",
   "received": [{"mono", "wall", "kind": "text" | "binary", "msg": <JSON> | "raw": <text>}],
   "start": <the start message's `start` object> | null,
   "stream_sid", "call_sid", "account_sid",
   "inbound_media": {"count", "bytes", "first": T | null, "last": T | null},
   "sent": {"media_count", "media_ms", "first_media": T | null, "last_media": T | null,
            "echoed_count", "marks": [{"name", "mono", "wall", "cursor_mono"}],
            "clear": T | null, "close": T | null},
   "mark_echoes": [{"name", "mono", "wall", "earliest_mono", "early_ms", "late_ms",
                    "after_clear"}],
   "marks_unechoed": [names], "dtmf": ["1", ...], "dtmf_events": [{"digit", "mono", "wall"}],
   "hangup": null | {"url", "status", "body", "mono", "wall"} | {"url", "error"},
   "errors": ["...", ...]}
  where T = {"mono": time.monotonic(), "wall": time.time()}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import re
import signal
import sys
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import agentlib

SID_RE = {
    "MZ": re.compile(r"^MZ[0-9a-f]{32}$"),
    "CA": re.compile(r"^CA[0-9a-f]{32}$"),
    "AC": re.compile(r"^AC[0-9a-f]{32}$"),
}
DIGITS = set("0123456789*#")
BYTES_PER_MS = 8  # µ-law 8 kHz


def sid_ok(prefix: str, value) -> bool:
    return isinstance(value, str) and bool(SID_RE[prefix].match(value))


def keys_exact(errors: list, where: str, obj, required: set, optional: set = frozenset()) -> bool:
    """Report missing and unexpected keys of `obj`; False when obj is no dict."""
    if not isinstance(obj, dict):
        errors.append(f"{where}: expected an object, got {type(obj).__name__}")
        return False
    missing = required - obj.keys()
    extra = obj.keys() - required - optional
    if missing:
        errors.append(f"{where}: missing {sorted(missing)}")
    if extra:
        errors.append(f"{where}: unexpected keys {sorted(extra)}")
    return True


class Conn:
    """One Media Streams connection: the checker state and what goes into the report."""

    def __init__(self, args, ws: ServerConnection):
        self.args = args
        self.ws = ws
        req = ws.request
        self.doc = {
            "path": req.path if req else None,
            "headers": {k: v for k, v in req.headers.raw_items()} if req else {},
            "rejected": None,
            "opened": agentlib.stamp(),
            "closed": None,
            "closed_by": None,
            "close_code": None,
            "close_reason": None,
            "received": [],
            "start": None,
            "stream_sid": None,
            "call_sid": None,
            "account_sid": None,
            "inbound_media": {"count": 0, "bytes": 0, "first": None, "last": None},
            "sent": {
                "media_count": 0,
                "media_ms": 0,
                "first_media": None,
                "last_media": None,
                "echoed_count": 0,
                "marks": [],
                "clear": None,
                "close": None,
            },
            "mark_echoes": [],
            "marks_unechoed": [],
            "dtmf": [],
            "dtmf_events": [],
            "hangup": None,
            "errors": [],
        }
        self.errors = self.doc["errors"]
        self.state = "want_connected"  # -> want_start -> streaming -> stopped
        self.next_seq = 1
        self.next_chunk = 1
        self.last_ts = None
        self.cursor = 0.0  # play-out cursor (monotonic seconds) of the audio we queued
        self.pending = []  # marks sent, not yet echoed: dicts from sent.marks
        self.cleared_pending = set()  # names pending when `clear` was sent
        self.clear_mono = None
        self.send_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.hangup_task: asyncio.Task | None = None
        self.audio = bytearray()
        self.we_closed = False

    # ----- sending -----

    async def send_json(self, obj: dict) -> None:
        async with self.send_lock:
            await self.ws.send(json.dumps(obj))

    async def send_media(self, ulaw: bytes, echo: bool = False) -> None:
        now = agentlib.stamp()
        await self.send_json(
            {
                "event": "media",
                "streamSid": self.doc["stream_sid"],
                "media": {"payload": base64.b64encode(ulaw).decode()},
            }
        )
        sent = self.doc["sent"]
        ms = len(ulaw) / BYTES_PER_MS
        sent["media_count"] += 1
        sent["media_ms"] += ms
        if echo:
            sent["echoed_count"] += 1
        if sent["first_media"] is None:
            sent["first_media"] = now
            if self.args.clear_after_ms is not None:
                self.spawn(self.clear_later(self.args.clear_after_ms))
        sent["last_media"] = now
        self.cursor = max(self.cursor, now["mono"]) + ms / 1000.0

    async def send_mark(self, name: str) -> None:
        now = agentlib.stamp()
        entry = {"name": name, "mono": now["mono"], "wall": now["wall"], "cursor_mono": self.cursor}
        await self.send_json(
            {"event": "mark", "streamSid": self.doc["stream_sid"], "mark": {"name": name}}
        )
        self.doc["sent"]["marks"].append(entry)
        self.pending.append(entry)

    async def say(self, ulaw: bytes) -> None:
        step = self.args.chunk_ms * BYTES_PER_MS
        chunks = [ulaw[i : i + step] for i in range(0, len(ulaw), step)]
        for i, chunk in enumerate(chunks, 1):
            await self.send_media(chunk)
            if self.args.marks == "each":
                await self.send_mark(f"chunk-{i}")
        if self.args.marks == "end" and chunks:
            await self.send_mark("end")

    async def clear_later(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)
        now = agentlib.stamp()
        self.clear_mono = now["mono"]
        self.cleared_pending = {m["name"] for m in self.pending}
        await self.send_json({"event": "clear", "streamSid": self.doc["stream_sid"]})
        self.doc["sent"]["clear"] = now
        self.cursor = now["mono"]

    async def close_later(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)
        self.doc["sent"]["close"] = agentlib.stamp()
        self.we_closed = True
        await self.ws.close(1000, "agent done")

    async def hangup_later(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)
        import aiohttp

        ac, ca = self.doc["account_sid"], self.doc["call_sid"]
        url = f"{self.args.hangup_rest.rstrip('/')}/2010-04-01/Accounts/{ac}/Calls/{ca}.json"
        at = agentlib.stamp()
        try:
            creds = base64.b64encode(f"{ac}:{self.args.api_key or ''}".encode()).decode()
            headers = {"Authorization": f"Basic {creds}"}
            async with aiohttp.ClientSession() as session:
                async with session.post(url, headers=headers, data={"Status": "completed"}) as resp:
                    body = await resp.text()
                    self.doc["hangup"] = {"url": url, "status": resp.status, "body": body, **at}
        except Exception as e:  # the report says what went wrong; the peer keeps running
            self.doc["hangup"] = {"url": url, "error": repr(e), **at}

    def spawn(self, coro) -> None:
        self.tasks.append(asyncio.create_task(coro))

    # ----- checking -----

    def check_seq(self, msg: dict, ev: str) -> None:
        seq = msg.get("sequenceNumber")
        if not isinstance(seq, str) or not seq.isdigit():
            self.errors.append(f"{ev}: sequenceNumber {seq!r} is not a decimal string")
        elif int(seq) != self.next_seq:
            self.errors.append(f"{ev}: sequenceNumber {seq} where {self.next_seq} was due")
        if isinstance(seq, str) and seq.isdigit():
            self.next_seq = int(seq) + 1
        else:
            self.next_seq += 1

    def check_stream_sid(self, msg: dict, ev: str) -> None:
        if msg.get("streamSid") != self.doc["stream_sid"]:
            self.errors.append(
                f"{ev}: streamSid {msg.get('streamSid')!r} is not the start's "
                f"{self.doc['stream_sid']!r}"
            )

    async def on_text(self, text: str, now: dict) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            self.doc["received"].append({**now, "kind": "text", "raw": text})
            self.errors.append(f"not JSON: {text[:80]!r}")
            return
        self.doc["received"].append({**now, "kind": "text", "msg": msg})
        if not isinstance(msg, dict):
            self.errors.append(f"not a JSON object: {text[:80]!r}")
            return
        ev = msg.get("event")
        if self.state == "stopped":
            self.errors.append(f"{ev}: message after stop")
        if ev == "connected":
            self.on_connected(msg)
        elif self.state == "want_connected":
            self.errors.append(f"{ev}: first message is not `connected`")
            self.state = "want_start"
            if ev == "start":
                await self.on_start(msg)
        elif ev == "start":
            await self.on_start(msg)
        elif self.state == "want_start":
            self.errors.append(f"{ev}: arrived before `start`")
        elif ev == "media":
            await self.on_media(msg, now)
        elif ev == "dtmf":
            self.on_dtmf(msg, now)
        elif ev == "mark":
            self.on_mark(msg, now)
        elif ev == "stop":
            self.on_stop(msg)
        else:
            self.errors.append(f"unknown event {ev!r}")

    def on_connected(self, msg: dict) -> None:
        if self.state != "want_connected":
            self.errors.append("connected: sent twice or not first")
            return
        self.state = "want_start"
        keys_exact(self.errors, "connected", msg, {"event", "protocol", "version"})
        if msg.get("protocol") != "Call":
            self.errors.append(f"connected: protocol {msg.get('protocol')!r} is not 'Call'")
        if msg.get("version") != "1.0.0":
            self.errors.append(f"connected: version {msg.get('version')!r} is not '1.0.0'")

    async def on_start(self, msg: dict) -> None:
        if self.state != "want_start":
            self.errors.append("start: sent twice")
            return
        self.state = "streaming"
        keys_exact(self.errors, "start", msg, {"event", "sequenceNumber", "streamSid", "start"})
        self.check_seq(msg, "start")
        st = msg.get("start")
        self.doc["start"] = st
        top_sid = msg.get("streamSid")
        if not sid_ok("MZ", top_sid):
            self.errors.append(f"start: streamSid {top_sid!r} is not MZ + 32 hex")
        self.doc["stream_sid"] = top_sid
        if keys_exact(
            self.errors,
            "start.start",
            st,
            {"streamSid", "accountSid", "callSid", "tracks", "customParameters", "mediaFormat"},
        ):
            if st.get("streamSid") != top_sid:
                self.errors.append("start: start.streamSid differs from streamSid")
            if not sid_ok("AC", st.get("accountSid")):
                self.errors.append(f"start: accountSid {st.get('accountSid')!r} is not AC + 32 hex")
            if not sid_ok("CA", st.get("callSid")):
                self.errors.append(f"start: callSid {st.get('callSid')!r} is not CA + 32 hex")
            self.doc["account_sid"] = st.get("accountSid")
            self.doc["call_sid"] = st.get("callSid")
            if st.get("tracks") != ["inbound"]:
                self.errors.append(f"start: tracks {st.get('tracks')!r} is not ['inbound']")
            cp = st.get("customParameters")
            if not isinstance(cp, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in cp.items()
            ):
                self.errors.append(f"start: customParameters {cp!r} is not an object of strings")
            mf = st.get("mediaFormat")
            want = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            if keys_exact(self.errors, "start.mediaFormat", mf, set(want)):
                for k, v in want.items():
                    got = mf.get(k)
                    if got != v or type(got) is not type(v):
                        self.errors.append(f"start: mediaFormat.{k} {got!r} is not {v!r}")
        if self.args.say:
            self.spawn(self.say(self.args.say_ulaw))
        if self.args.close_after_ms is not None:
            self.spawn(self.close_later(self.args.close_after_ms))
        if self.args.hangup_rest and self.args.hangup_after_ms is not None:
            # Not cancelled when the socket closes: the call ending is this request's effect,
            # and its answer may come after the close.
            self.hangup_task = asyncio.create_task(self.hangup_later(self.args.hangup_after_ms))

    async def on_media(self, msg: dict, now: dict) -> None:
        keys_exact(self.errors, "media", msg, {"event", "sequenceNumber", "streamSid", "media"})
        self.check_seq(msg, "media")
        self.check_stream_sid(msg, "media")
        m = msg.get("media")
        if not keys_exact(
            self.errors, "media.media", m, {"track", "chunk", "timestamp", "payload"}
        ):
            return
        if m.get("track") != "inbound":
            self.errors.append(f"media: track {m.get('track')!r} is not 'inbound'")
        chunk = m.get("chunk")
        if not isinstance(chunk, str) or not chunk.isdigit():
            self.errors.append(f"media: chunk {chunk!r} is not a decimal string")
        else:
            if int(chunk) != self.next_chunk:
                self.errors.append(f"media: chunk {chunk} where {self.next_chunk} was due")
            self.next_chunk = int(chunk) + 1
        ts = m.get("timestamp")
        if not isinstance(ts, str) or not ts.isdigit():
            self.errors.append(f"media: timestamp {ts!r} is not a decimal string (ms)")
        else:
            if self.last_ts is not None and int(ts) <= self.last_ts:
                self.errors.append(
                    f"media: timestamp {ts} does not grow (previous {self.last_ts}, chunk {chunk})"
                )
            self.last_ts = int(ts)
        payload = m.get("payload")
        try:
            audio = base64.b64decode(payload, validate=True) if isinstance(payload, str) else None
        except (binascii.Error, ValueError):
            audio = None
        if audio is None:
            self.errors.append(f"media: payload is not base64 (chunk {chunk})")
            return
        if len(audio) != 160:
            self.errors.append(f"media: payload has {len(audio)} bytes, not 160 (chunk {chunk})")
        inbound = self.doc["inbound_media"]
        inbound["count"] += 1
        inbound["bytes"] += len(audio)
        if inbound["first"] is None:
            inbound["first"] = now
        inbound["last"] = now
        self.audio.extend(audio)
        if self.args.echo:
            await self.send_media(audio, echo=True)

    def on_dtmf(self, msg: dict, now: dict) -> None:
        keys_exact(self.errors, "dtmf", msg, {"event", "sequenceNumber", "streamSid", "dtmf"})
        self.check_seq(msg, "dtmf")
        self.check_stream_sid(msg, "dtmf")
        d = msg.get("dtmf")
        if not keys_exact(self.errors, "dtmf.dtmf", d, {"track", "digit"}):
            return
        if d.get("track") != "inbound_track":
            self.errors.append(f"dtmf: track {d.get('track')!r} is not 'inbound_track'")
        digit = d.get("digit")
        if not isinstance(digit, str) or digit not in DIGITS:
            self.errors.append(f"dtmf: digit {digit!r} is not one of 0-9 * #")
        self.doc["dtmf"].append(digit)
        self.doc["dtmf_events"].append({"digit": digit, **now})

    def on_mark(self, msg: dict, now: dict) -> None:
        keys_exact(self.errors, "mark", msg, {"event", "sequenceNumber", "streamSid", "mark"})
        self.check_seq(msg, "mark")
        self.check_stream_sid(msg, "mark")
        mk = msg.get("mark")
        if not keys_exact(self.errors, "mark.mark", mk, {"name"}):
            return
        name = mk.get("name")
        echo = {"name": name, **now, "earliest_mono": None, "early_ms": None, "late_ms": None}
        echo["after_clear"] = name in self.cleared_pending
        self.doc["mark_echoes"].append(echo)
        if not self.pending:
            self.errors.append(f"mark: echo of {name!r} that was not pending")
            return
        if self.pending[0]["name"] != name:
            names = [m["name"] for m in self.pending]
            self.errors.append(f"mark: echo of {name!r} out of order (pending {names[:5]})")
            match = next((m for m in self.pending if m["name"] == name), None)
            if match is None:
                return
        else:
            match = self.pending[0]
        self.pending.remove(match)
        tol = self.args.mark_tolerance_ms / 1000.0
        if echo["after_clear"]:
            self.cleared_pending.discard(name)
            delay = now["mono"] - self.clear_mono
            echo["late_ms"] = round(delay * 1000.0, 1)
            if delay > self.args.clear_tolerance_ms / 1000.0:
                self.errors.append(
                    f"mark: {name!r} pending at clear came back {delay * 1000:.0f} ms after it"
                )
            return
        earliest = match["cursor_mono"]
        echo["earliest_mono"] = earliest
        diff = now["mono"] - earliest
        echo["early_ms" if diff < 0 else "late_ms"] = round(abs(diff) * 1000.0, 1)
        if now["mono"] < earliest - tol:
            self.errors.append(
                f"mark: {name!r} echoed {(earliest - now['mono']) * 1000:.0f} ms before its "
                "audio could have played"
            )

    def on_stop(self, msg: dict) -> None:
        keys_exact(self.errors, "stop", msg, {"event", "sequenceNumber", "streamSid", "stop"})
        self.check_seq(msg, "stop")
        self.check_stream_sid(msg, "stop")
        st = msg.get("stop")
        if keys_exact(self.errors, "stop.stop", st, {"accountSid", "callSid"}):
            if st.get("accountSid") != self.doc["account_sid"]:
                self.errors.append("stop: accountSid differs from start's")
            if st.get("callSid") != self.doc["call_sid"]:
                self.errors.append("stop: callSid differs from start's")
        self.state = "stopped"

    def finish(self) -> None:
        now = agentlib.stamp()
        self.doc["closed"] = now
        self.doc["closed_by"] = "agent" if self.we_closed else "peer"
        self.doc["close_code"] = self.ws.close_code
        self.doc["close_reason"] = self.ws.close_reason
        if self.state != "stopped" and not self.we_closed:
            self.errors.append(f"closed without `stop` (state {self.state})")
        tol = self.args.mark_tolerance_ms / 1000.0
        self.doc["marks_unechoed"] = [m["name"] for m in self.pending]
        for m in self.pending:
            if m["name"] in self.cleared_pending:
                self.errors.append(f"mark: {m['name']!r} pending at clear never came back")
            elif m["cursor_mono"] + tol < now["mono"] and not self.we_closed:
                self.errors.append(f"mark: {m['name']!r} played out but never echoed")


class Agent:
    def __init__(self, args):
        self.args = args
        self.connections: list[dict] = []
        self.audio = bytearray()
        self.done = asyncio.Event()

    def write(self) -> None:
        if self.args.report:
            errors = [e for c in self.connections for e in c["errors"]]
            doc = {"port": self.args.port, "connections": self.connections, "errors": errors}
            agentlib.write_json(self.args.report, doc)
        if self.args.record:
            agentlib.write_wav(self.args.record, agentlib.ulaw_decode(bytes(self.audio)), 8000)

    def process_request(self, ws: ServerConnection, request):
        for name, value in self.args.expect_headers:
            got = request.headers.get(name)
            if got != value:
                self.connections.append(
                    {
                        "path": request.path,
                        "headers": {k: v for k, v in request.headers.raw_items()},
                        "rejected": f"header {name}: {got!r} is not {value!r}",
                        "opened": agentlib.stamp(),
                        "errors": [f"rejected: header {name}: {got!r} is not {value!r}"],
                    }
                )
                self.write()
                if self.args.once:
                    self.done.set()
                return ws.respond(HTTPStatus.FORBIDDEN, f"header {name} missing or wrong\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        conn = Conn(self.args, ws)
        self.connections.append(conn.doc)
        try:
            async for data in ws:
                now = agentlib.stamp()
                if isinstance(data, bytes):
                    conn.doc["received"].append({**now, "kind": "binary", "bytes": len(data)})
                    conn.errors.append("binary frame (Media Streams sends text frames only)")
                    continue
                try:
                    await conn.on_text(data, now)
                except ConnectionClosed:
                    raise
                except Exception as e:  # a message shaped so oddly that a check tripped on it
                    conn.errors.append(f"could not check {data[:80]!r}: {e!r}")
        except ConnectionClosed:
            pass
        finally:
            for t in conn.tasks:
                t.cancel()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            if conn.hangup_task is not None:
                try:
                    await asyncio.wait_for(conn.hangup_task, timeout=10)
                except (asyncio.TimeoutError, Exception):
                    pass
            conn.finish()
            self.audio.extend(conn.audio)
            self.write()
            if self.args.once:
                self.done.set()

    async def run(self) -> None:
        async with serve(
            self.handler,
            self.args.host,
            self.args.port,
            process_request=self.process_request,
            max_size=None,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            self.args.port = port
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.done.set)
            agentlib.announce(port)
            await self.done.wait()
        self.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--report")
    p.add_argument("--record")
    p.add_argument("--once", action="store_true")
    p.add_argument("--say")
    p.add_argument("--chunk-ms", type=int, default=20)
    p.add_argument("--marks", choices=["each", "end", "none"], default="each")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--clear-after-ms", type=int)
    p.add_argument("--close-after-ms", type=int)
    p.add_argument("--hangup-rest")
    p.add_argument("--hangup-after-ms", type=int)
    p.add_argument("--api-key")
    p.add_argument("--expect-header", action="append", default=[])
    p.add_argument("--mark-tolerance-ms", type=int, default=80)
    p.add_argument("--clear-tolerance-ms", type=int, default=500)
    args = p.parse_args()
    if args.chunk_ms <= 0:
        sys.exit("--chunk-ms must be positive")
    if args.hangup_rest and args.hangup_after_ms is None:
        sys.exit("--hangup-rest needs --hangup-after-ms")
    args.expect_headers = agentlib.parse_headers(args.expect_header)
    args.say_ulaw = b""
    if args.say:
        args.say_ulaw = agentlib.ulaw_encode(agentlib.read_wav_at(args.say, 8000))
    asyncio.run(Agent(args).run())


if __name__ == "__main__":
    main()
