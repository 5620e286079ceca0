#!/usr/bin/env python3
"""A WebRTC voice agent (aiortc) answering outdial's offers, for outdial's integration tests.

What it does: an aiohttp HTTP server taking SDP offers in the two shapes agents use:
  - pipecat SmallWebRTC: `POST /api/offer` JSON {"sdp", "type": "offer", "pc_id": null,
    "request_data": {...}} -> 200 {"sdp", "type": "answer", "pc_id"}; `PATCH /api/offer`
    {"pc_id", "candidates": [{"candidate", "sdp_mid", "sdp_mline_index"}]} trickles candidates;
  - WHIP (RFC 9725): `POST /whip` with `application/sdp` -> 201 + Location + the answer SDP;
    `DELETE <Location>` ends the session (200).
It answers with aiortc (ICE + DTLS-SRTP; PCMU/PCMA/G722/Opus, whatever the offer prefers),
records the audio it receives, plays a WAV back (or echoes), can close the peer connection after
a delay, and writes a JSON report. ICE host candidates are --ice-address only (127.0.0.1), as
aioice would otherwise offer every interface but loopback. It exits 0 unless it crashed.

What it must not do: know outdial's code; it follows the SmallWebRTC/WHIP shapes and WebRTC only.

Usage:
  webrtc_agent.py --port 0 --report r.json [flags]     prints `LISTENING <port>` once listening

Flags:
  --host H                  HTTP listen address (127.0.0.1)
  --port P                  HTTP port; 0 picks a free one (printed)
  --ice-address A           the only ICE host candidate address (127.0.0.1)
  --report FILE             the JSON report, rewritten on every state change and at exit
  --record FILE             the received audio, 8 kHz 16-bit mono WAV (all sessions, in order)
  --once                    exit after the first session ends (peer connection closed or failed)
  --say WAV                 once connected, play this WAV (resampled to 8 kHz) in real time
  --echo                    send the received audio straight back
  --close-after-ms N        close the peer connection N ms after it reached "connected"

Report (JSON): {"port", "sessions": [session, ...], "errors": [every session's errors]} where
  session = {"pc_id", "shape": "smallwebrtc" | "whip", "request_data": {...} | null,
   "offer_sdp", "answer_sdp", "offer_media": ["audio", ...] (m-lines in order),
   "offer_codecs": ["PCMU/8000", ...] (first audio m-line, in order), "codec": "PCMU/8000" |
   null (what the answer chose), "opened": T, "states": [{"kind": "connection" | "ice",
   "state", "mono", "wall"}], "connected": T | null, "track": T | null (remote audio arrived),
   "audio_in": {"frames", "ms", "first": T | null, "last": T | null},
   "audio_out": {"frames", "ms", "say_started": T | null, "say_done": T | null},
   "candidates_patched": n, "close_requested": T | null (ours or DELETE), "ended": T | null,
   "errors": ["...", ...]}
  where T = {"mono": time.monotonic(), "wall": time.time()}.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import signal
import time
import uuid

import agentlib
import aioice.ice
import av
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

RATE = 8000
SAMPLES = RATE // 50  # 20 ms


class AgentTrack(MediaStreamTrack):
    """Our outgoing audio: queued PCM (the WAV or the echo) in real time, silence otherwise."""

    kind = "audio"

    def __init__(self, session: dict):
        super().__init__()
        self.s = session
        self.pending = bytearray()
        self.start: float | None = None
        self.pts = 0
        self.saying = False

    def queue(self, pcm: bytes) -> None:
        self.pending.extend(pcm)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        else:
            self.pts += SAMPLES
            wait = self.start + self.pts / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        need = SAMPLES * 2
        chunk = bytes(self.pending[:need])
        del self.pending[:need]
        if chunk:
            out = self.s["audio_out"]
            out["frames"] += 1
            out["ms"] += len(chunk) / 2 / RATE * 1000.0
        elif self.saying:
            self.saying = False
            self.s["audio_out"]["say_done"] = agentlib.stamp()
        chunk = chunk.ljust(need, b"\x00")
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(chunk)
        frame.pts = self.pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


def media_of(sdp: str) -> tuple[list[str], list[str]]:
    """(m-line kinds in order, the first audio m-line's codecs as NAME/RATE in order)."""
    kinds, codecs, rtpmap, audio_pts, in_first_audio = [], [], {}, [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line[2:].split()
            kinds.append(parts[0])
            in_first_audio = parts[0] == "audio" and not audio_pts
            if in_first_audio:
                audio_pts = parts[3:]
        elif in_first_audio and line.startswith("a=rtpmap:"):
            pt, _, enc = line[len("a=rtpmap:") :].partition(" ")
            rtpmap[pt] = "/".join(enc.split("/")[:2])
    for pt in audio_pts:
        codecs.append(rtpmap.get(pt, f"pt{pt}"))
    return kinds, codecs


class Agent:
    def __init__(self, args):
        self.args = args
        self.sessions: list[dict] = []
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.audio = bytearray()
        self.done = asyncio.Event()
        self.say_pcm = b""
        if args.say:
            self.say_pcm = agentlib.read_wav_at(args.say, RATE).astype("<i2").tobytes()

    def write(self) -> None:
        if self.args.report:
            errors = [e for s in self.sessions for e in s["errors"]]
            doc = {"port": self.args.port, "sessions": self.sessions, "errors": errors}
            agentlib.write_json(self.args.report, doc)
        if self.args.record:
            agentlib.write_wav(self.args.record, np.frombuffer(bytes(self.audio), "<i2"), RATE)

    async def answer(self, offer_sdp: str, shape: str, request_data) -> tuple[dict, str]:
        pc_id = f"PC-{uuid.uuid4()}"
        kinds, codecs = media_of(offer_sdp)
        s = {
            "pc_id": pc_id,
            "shape": shape,
            "request_data": request_data,
            "offer_sdp": offer_sdp,
            "answer_sdp": None,
            "offer_media": kinds,
            "offer_codecs": codecs,
            "codec": None,
            "opened": agentlib.stamp(),
            "states": [],
            "connected": None,
            "track": None,
            "audio_in": {"frames": 0, "ms": 0.0, "first": None, "last": None},
            "audio_out": {"frames": 0, "ms": 0.0, "say_started": None, "say_done": None},
            "candidates_patched": 0,
            "close_requested": None,
            "ended": None,
            "errors": [],
        }
        self.sessions.append(s)
        if not kinds or kinds[0] != "audio":
            s["errors"].append(f"offer: first m-line is {kinds[:1]}, not audio")
        pc = RTCPeerConnection()
        self.pcs[pc_id] = pc
        out = AgentTrack(s)

        @pc.on("connectionstatechange")
        async def on_state():
            state = pc.connectionState
            s["states"].append({"kind": "connection", "state": state, **agentlib.stamp()})
            if pc.connectionState == "connected" and s["connected"] is None:
                s["connected"] = agentlib.stamp()
                if self.say_pcm:
                    out.queue(self.say_pcm)
                    out.saying = True
                    s["audio_out"]["say_started"] = agentlib.stamp()
                if self.args.close_after_ms is not None:
                    asyncio.create_task(self.close_later(pc_id, self.args.close_after_ms))
            if pc.connectionState in ("closed", "failed"):
                await self.end(pc_id)
            self.write()

        @pc.on("iceconnectionstatechange")
        def on_ice():
            s["states"].append({"kind": "ice", "state": pc.iceConnectionState, **agentlib.stamp()})

        @pc.on("track")
        def on_track(track):
            if track.kind != "audio":
                return
            s["track"] = agentlib.stamp()
            asyncio.create_task(self.consume(track, s, out))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            s["errors"].append("offer has no audio m-line")
        else:
            audio[0].sender.replaceTrack(out)
            audio[0].direction = "sendrecv"
        await pc.setLocalDescription(await pc.createAnswer())
        s["answer_sdp"] = pc.localDescription.sdp
        answer_codecs = media_of(pc.localDescription.sdp)[1]
        s["codec"] = answer_codecs[0] if answer_codecs else None
        self.write()
        return s, pc.localDescription.sdp

    async def consume(self, track, s: dict, out: AgentTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        ai = s["audio_in"]
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = agentlib.stamp()
            ai["frames"] += 1
            ai["ms"] += frame.samples / frame.sample_rate * 1000.0
            ai["first"] = ai["first"] or now
            ai["last"] = now
            for f in resampler.resample(frame):
                pcm = bytes(f.planes[0])[: f.samples * 2]
                self.audio.extend(pcm)
                if self.args.echo:
                    out.queue(pcm)

    async def close_later(self, pc_id: str, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)
        pc = self.pcs.get(pc_id)
        if pc is not None:
            self.session(pc_id)["close_requested"] = agentlib.stamp()
            await pc.close()
            await self.end(pc_id)

    def session(self, pc_id: str) -> dict:
        return next(s for s in self.sessions if s["pc_id"] == pc_id)

    async def end(self, pc_id: str) -> None:
        pc = self.pcs.pop(pc_id, None)
        if pc is None:
            return
        await pc.close()
        self.session(pc_id)["ended"] = agentlib.stamp()
        self.write()
        if self.args.once:
            self.done.set()

    # ----- HTTP -----

    async def post_offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or body.get("type") != "offer" or "sdp" not in body:
            return web.json_response({"error": "want {sdp, type: offer}"}, status=400)
        if body.get("pc_id") is not None:
            return web.json_response({"error": "renegotiation is not supported"}, status=400)
        s, answer = await self.answer(body["sdp"], "smallwebrtc", body.get("request_data"))
        if "pc_id" not in body or "request_data" not in body:
            s["errors"].append("offer body lacks pc_id or request_data (SmallWebRTC sends both)")
        return web.json_response({"sdp": answer, "type": "answer", "pc_id": s["pc_id"]})

    async def patch_offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        pc = self.pcs.get(body.get("pc_id") if isinstance(body, dict) else None)
        if pc is None:
            return web.json_response({"error": "unknown pc_id"}, status=404)
        for c in body.get("candidates") or []:
            cand = candidate_from_sdp(c["candidate"].removeprefix("candidate:"))
            cand.sdpMid = c.get("sdp_mid")
            cand.sdpMLineIndex = c.get("sdp_mline_index")
            await pc.addIceCandidate(cand)
            self.session(body["pc_id"])["candidates_patched"] += 1
        return web.json_response({"status": "success"})

    async def post_whip(self, request: web.Request) -> web.Response:
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="WHIP wants Content-Type: application/sdp\n")
        s, answer = await self.answer(await request.text(), "whip", None)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whip/{s['pc_id']}"},
        )

    async def delete_whip(self, request: web.Request) -> web.Response:
        pc_id = request.match_info["pc_id"]
        if pc_id not in self.pcs:
            return web.Response(status=404)
        self.session(pc_id)["close_requested"] = agentlib.stamp()
        await self.end(pc_id)
        return web.Response(status=200)

    async def run(self) -> None:
        app = web.Application()
        app.router.add_post("/api/offer", self.post_offer)
        app.router.add_patch("/api/offer", self.patch_offer)
        app.router.add_post("/whip", self.post_whip)
        app.router.add_delete("/whip/{pc_id}", self.delete_whip)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.args.host, self.args.port)
        await site.start()
        self.args.port = runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        agentlib.announce(self.args.port)
        await self.done.wait()
        for pc_id in list(self.pcs):
            await self.end(pc_id)
        await runner.cleanup()
        self.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ice-address", default="127.0.0.1")
    p.add_argument("--report")
    p.add_argument("--record")
    p.add_argument("--once", action="store_true")
    p.add_argument("--say")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--close-after-ms", type=int)
    args = p.parse_args()
    # aioice gathers every interface but loopback; the tests run on loopback only.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.ice_address]
    asyncio.run(Agent(args).run())


if __name__ == "__main__":
    main()

