"""Shared helpers of the AI-agent test peers in this folder (not a peer itself).

What it does: G.711 µ-law encode/decode (numpy, no audioop), 16-bit mono WAV read/write, resampling
(soxr), the two clocks every report entry carries, an atomic JSON report writer, the
`LISTENING <port>` line the Rust tests wait for, and `--name=value` header parsing.

What it must not do: know anything about outdial's code; everything here follows the public
formats (ITU-T G.711, RIFF WAV) so the peers judge outdial from the outside.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import wave

import numpy as np

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def stamp() -> dict:
    """The two clocks a report entry carries: `mono` (time.monotonic) and `wall` (time.time)."""
    return {"mono": time.monotonic(), "wall": time.time()}


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """16-bit signed PCM samples -> G.711 µ-law bytes (the standard segment encoder)."""
    x = pcm.astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    # exponent = position of the highest set bit above bit 7 (0..7)
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 µ-law bytes -> 16-bit signed PCM samples."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV -> (mono int16 samples, sample rate). Stereo is mixed down."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        rate = w.getframerate()
        channels = w.getnchannels()
        frames = w.readframes(w.getnframes())
    pcm = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return pcm.astype(np.int16), rate


def resample(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """int16 mono PCM from rate_in to rate_out (soxr, high quality)."""
    if rate_in == rate_out:
        return pcm.astype(np.int16)
    import soxr

    out = soxr.resample(pcm.astype(np.float32), rate_in, rate_out)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_wav_at(path: str, rate: int) -> np.ndarray:
    """A WAV file as int16 mono PCM at `rate` (resampled when the file has another rate)."""
    pcm, file_rate = read_wav(path)
    return resample(pcm, file_rate, rate)


def write_wav(path: str, pcm: np.ndarray, rate: int) -> None:
    """int16 mono PCM -> 16-bit mono WAV at `rate`."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def write_json(path: str, doc: dict) -> None:
    """Write `doc` as JSON to `path` atomically (a reader never sees half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    os.replace(tmp, path)


def announce(port: int) -> None:
    """Print the `LISTENING <port>` line the Rust tests wait for."""
    print(f"LISTENING {port}", flush=True)


def parse_headers(items: list[str]) -> list[tuple[str, str]]:
    """`NAME=VALUE` strings -> [(name, value)]; a bad one exits with a clear line."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            sys.exit(f"--expect-header wants NAME=VALUE, got {item!r}")
        out.append((name.strip(), value))
    return out
