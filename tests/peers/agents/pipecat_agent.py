#!/usr/bin/env python3
"""A pipecat voice agent, pipecat-ai unchanged, that outdial's tests bridge calls to.

What it does: serves a FastAPI WebSocket endpoint (uvicorn) the way pipecat's Twilio bots do:
pipecat's runner helper `parse_telephony_websocket` reads our first messages and must detect
"twilio"; then pipecat's own `TwilioFrameSerializer` and `FastAPIWebsocketTransport` carry a
pipeline [transport in -> local processor -> transport out]. The local processor echoes the
caller's audio, or speaks a WAV when the call starts; it can interrupt itself (pipecat's
InterruptionFrame, which the serializer sends as `clear`) and end the pipeline (EndFrame, after
which the serializer POSTs the Twilio hang-up to --twilio-base-url). It reports what pipecat saw.

What it must not do: patch or subclass pipecat's serializer, transport or runner helper; the
point is to find out whether pipecat as shipped works with outdial. No cloud service is called.

Usage:
  pipecat_agent.py --port 0 --report r.json [flags]     prints `LISTENING <port>` once listening

Flags:
  --host H                 listen address (127.0.0.1); the WebSocket is served on every path
  --port P                 listen port; 0 picks a free one (printed)
  --report FILE            the JSON report, rewritten after each session ends (and on exit)
  --record FILE            the caller's audio as pipecat decoded it, 8 kHz 16-bit WAV
  --once                   exit after the first session ends
  --say WAV                speak this WAV (resampled to 8 kHz) when the call starts
  --echo                   send the caller's audio straight back
  --interrupt-after-ms N   N ms after it started speaking, broadcast an interruption
                           (the serializer sends `clear`; the rest of the WAV is dropped)
  --end-after-ms N         N ms after the pipeline started, queue an EndFrame: pipecat plays out
                           what is queued, POSTs Status=completed to the call-control API and
                           closes the WebSocket
  --account-sid AC         the Twilio account SID the serializer uses for the hang-up
                           (default $TWILIO_ACCOUNT_SID); with no account SID, auto_hang_up is off
  --auth-token T           the secret for that Basic auth (default $TWILIO_AUTH_TOKEN; outdial's
                           API key)
  --twilio-base-url URL    TwilioFrameSerializer's `base_url`: where the hang-up goes
                           (http://127.0.0.1:PORT; pipecat adds /2010-04-01/Accounts/...)

Report (JSON): {"port", "pipecat_version", "sessions": [session, ...], "log": [line, ...],
  "errors": [every session's errors]} where session =
  {"path", "opened": T, "transport_type": "twilio" | ..., "call_data": {stream_id, call_id,
   from, to, body}, "serializer": {"stream_sid", "call_sid", "account_sid", "base_url",
   "auto_hang_up"}, "pipeline_started": T, "input_audio": {"frames", "bytes", "sample_rate",
   "first": T, "last": T}, "output_audio": {"frames", "bytes", "ms"}, "dtmf": ["1", ...],
   "dtmf_events": [{"digit", "mono", "wall"}], "speaking_started": T (first audio pushed),
   "bot_started_speaking": [T], "bot_stopped_speaking": [T], "interrupted": T | null,
   "end_queued": T | null, "client_disconnected": T | null, "finished": T, "errors": [...]}
  and `log` holds pipecat's own INFO+ lines from its Twilio serializer (e.g. "Successfully
  terminated Twilio call CA..." or "Failed to terminate ...: Status 401 ..."), each
  {"level", "message", "mono", "wall"}; T = {"mono": time.monotonic(), "wall": time.time()}.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import signal
import socket
import sys

import agentlib
import numpy as np
import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

RATE = 8000
FRAME_BYTES = RATE // 50 * 2  # 20 ms of 16-bit PCM, as a TTS service would stream it


class Agent(FrameProcessor):
    """The bot: echo or speak, interrupt itself, end the call; counts what reaches it."""

    def __init__(self, args, session: dict, audio: bytearray):
        super().__init__()
        self.args = args
        self.s = session
        self.audio = audio
        self.task: PipelineWorker | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        now = agentlib.stamp()
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self.s["pipeline_started"] = now
            if self.args.end_after_ms is not None:
                self.create_task(self.end_later(self.args.end_after_ms / 1000.0))
            if self.args.say_pcm:
                await self.speak(self.args.say_pcm)
            return
        if isinstance(frame, InputAudioRawFrame):
            ia = self.s["input_audio"]
            ia["frames"] += 1
            ia["bytes"] += len(frame.audio)
            ia["sample_rate"] = frame.sample_rate
            ia["first"] = ia["first"] or now
            ia["last"] = now
            self.audio.extend(frame.audio)
            if self.args.echo:
                await self.push_out(frame.audio, frame.sample_rate)
            return
        if isinstance(frame, InputDTMFFrame):
            digit = frame.button.value
            self.s["dtmf"].append(digit)
            self.s["dtmf_events"].append({"digit": digit, **now})
            return
        if isinstance(frame, BotStartedSpeakingFrame):
            self.s["bot_started_speaking"].append(now)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.s["bot_stopped_speaking"].append(now)
        await self.push_frame(frame, direction)

    async def push_out(self, pcm: bytes, rate: int, tts: bool = False) -> None:
        oa = self.s["output_audio"]
        oa["frames"] += 1
        oa["bytes"] += len(pcm)
        oa["ms"] += len(pcm) / 2 / rate * 1000.0
        cls = TTSAudioRawFrame if tts else OutputAudioRawFrame
        await self.push_frame(cls(audio=pcm, sample_rate=rate, num_channels=1))

    async def speak(self, pcm: bytes) -> None:
        self.s["speaking_started"] = agentlib.stamp()
        if self.args.interrupt_after_ms is not None:
            self.create_task(self.interrupt_later(self.args.interrupt_after_ms / 1000.0))
        # the frames a TTS service pushes: the output transport counts them as bot speech
        await self.push_frame(TTSStartedFrame())
        for i in range(0, len(pcm), FRAME_BYTES):
            await self.push_out(pcm[i : i + FRAME_BYTES], RATE, tts=True)
        await self.push_frame(TTSStoppedFrame())

    async def interrupt_later(self, secs: float) -> None:
        await asyncio.sleep(secs)
        self.s["interrupted"] = agentlib.stamp()
        await self.broadcast_interruption()

    async def end_later(self, secs: float) -> None:
        await asyncio.sleep(secs)
        self.s["end_queued"] = agentlib.stamp()
        if self.task is not None:
            await self.task.queue_frame(EndFrame())


class Server:
    def __init__(self, args):
        self.args = args
        self.sessions: list[dict] = []
        self.log: list[dict] = []
        self.audio = bytearray()
        self.uvicorn: uvicorn.Server | None = None
        self.app = FastAPI()
        self.app.add_api_websocket_route("/{path:path}", self.endpoint)
        self.app.add_api_websocket_route("/", self.endpoint)
        logger.add(self.log_sink, level="INFO", filter="pipecat.serializers.twilio")

    def log_sink(self, message) -> None:
        rec = message.record
        self.log.append({"level": rec["level"].name, "message": rec["message"], **agentlib.stamp()})

    def write(self) -> None:
        if self.args.report:
            doc = {
                "port": self.args.port,
                "pipecat_version": importlib.metadata.version("pipecat-ai"),
                "sessions": self.sessions,
                "log": self.log,
                "errors": [e for s in self.sessions for e in s["errors"]],
            }
            agentlib.write_json(self.args.report, doc)
        if self.args.record:
            agentlib.write_wav(self.args.record, np.frombuffer(bytes(self.audio), "<i2"), RATE)

    async def endpoint(self, websocket: WebSocket):
        s = {
            "path": websocket.url.path,
            "opened": agentlib.stamp(),
            "transport_type": None,
            "call_data": None,
            "serializer": None,
            "pipeline_started": None,
            "input_audio": {
                "frames": 0,
                "bytes": 0,
                "sample_rate": None,
                "first": None,
                "last": None,
            },
            "output_audio": {"frames": 0, "bytes": 0, "ms": 0.0},
            "dtmf": [],
            "dtmf_events": [],
            "speaking_started": None,
            "bot_started_speaking": [],
            "bot_stopped_speaking": [],
            "interrupted": None,
            "end_queued": None,
            "client_disconnected": None,
            "finished": None,
            "errors": [],
        }
        self.sessions.append(s)
        try:
            await self.session(websocket, s)
        except Exception as e:  # the report names it; the server keeps serving
            s["errors"].append(f"session failed: {e!r}")
        finally:
            s["finished"] = agentlib.stamp()
            self.write()
            if self.args.once and self.uvicorn is not None:
                self.uvicorn.should_exit = True

    async def session(self, websocket: WebSocket, s: dict) -> None:
        await websocket.accept()
        transport_type, call_data = await parse_telephony_websocket(websocket)
        s["transport_type"] = transport_type
        s["call_data"] = call_data.model_dump(by_alias=True)
        if transport_type != "twilio":
            s["errors"].append(f"parse_telephony_websocket detected {transport_type!r}, not twilio")
            await websocket.close()
            return
        auto_hang_up = bool(self.args.account_sid)
        serializer = TwilioFrameSerializer(
            stream_sid=call_data.stream_id,
            call_sid=call_data.call_id,
            account_sid=self.args.account_sid or None,
            auth_token=self.args.auth_token or None,
            base_url=self.args.twilio_base_url,
            params=TwilioFrameSerializer.InputParams(auto_hang_up=auto_hang_up),
        )
        s["serializer"] = {
            "stream_sid": call_data.stream_id,
            "call_sid": call_data.call_id,
            "account_sid": self.args.account_sid or None,
            "base_url": self.args.twilio_base_url,
            "auto_hang_up": auto_hang_up,
        }
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        agent = Agent(self.args, s, self.audio)
        pipeline = Pipeline([transport.input(), agent, transport.output()])
        task = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )
        agent.task = task

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport, _ws):
            s["client_disconnected"] = agentlib.stamp()
            await task.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(task)
        await runner.run()

    async def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.args.host, self.args.port))
        self.args.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", ws="websockets-sansio"
        )
        self.uvicorn = uvicorn.Server(config)
        self.uvicorn.install_signal_handlers = lambda: None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        serving = asyncio.create_task(self.uvicorn.serve(sockets=[sock]))
        while not self.uvicorn.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            await serving
            sys.exit("uvicorn did not start")
        agentlib.announce(self.args.port)
        await serving
        self.write()

    def stop(self) -> None:
        if self.uvicorn is not None:
            self.uvicorn.should_exit = True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--report")
    p.add_argument("--record")
    p.add_argument("--once", action="store_true")
    p.add_argument("--say")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--interrupt-after-ms", type=int)
    p.add_argument("--end-after-ms", type=int)
    p.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID", ""))
    p.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN", ""))
    p.add_argument("--twilio-base-url")
    p.add_argument("--log-level", default="WARNING", help="pipecat's loguru level on stderr")
    args = p.parse_args()
    if args.account_sid and not args.auth_token:
        sys.exit("--account-sid needs --auth-token (or $TWILIO_AUTH_TOKEN) for the hang-up")
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    args.say_pcm = agentlib.read_wav_at(args.say, RATE).astype("<i2").tobytes() if args.say else b""
    asyncio.run(Server(args).run())


if __name__ == "__main__":
    main()
