#!/usr/bin/env python3
"""Reproducible, labeled synthetic speech corpus for answering-machine detection (AMD).

Each clip is what the dialer hears after the callee's line is answered:

  HUMAN   someone picks up ("Hello?"), then WAITS in silence for the caller
          (sometimes says a second "Hello?"), or a live receptionist greeting
          followed by silence, or a pickup with background chatter.
  MACHINE a personal / carrier / business / very short voicemail greeting,
          usually followed by a beep (sine 400-2000 Hz), then silence.

Every clip goes through a randomized telephone channel (leading carrier silence,
8 kHz, 300-3400 Hz band limit, level, background noise, voice tempo/pitch
perturbation, frame loss, G.711 mu-law round trip) and is written as an 8 kHz
mono 16-bit PCM WAV.

Splits: train and val use the *train* voices and phrasings ("T|" lines in
phrases/*.txt); heldout uses ONLY held-out voices and held-out phrasings
("H|" lines).  See README.md.

All randomness comes from random.Random seeded per clip with
(seed, split, index), and every external tool is deterministic (sox runs with
-R), so the same seed gives byte-identical output.

Only the Python standard library plus espeak-ng, flite, festival (text2wave)
and sox are needed.
"""

import argparse
import array
import csv
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
PHRASE_DIR = os.path.join(HERE, "phrases")
SR = 8000
MS = SR // 1000  # samples per millisecond
SPLITS = ("train", "val", "heldout")
LABEL_HEADER = ["file", "label", "beep_ms", "voice", "phrase", "kind", "lead_ms", "speech_onset_ms"]
CHANNEL_HEADER = [
    "file", "template", "tts_params", "tempo", "pitch_cents", "level_dbfs", "answer_gap_ms",
    "speech_end_ms", "noise", "snr_db", "comfort_dbfs", "band_hz", "frame_loss_pct",
    "beep_hz", "beep_len_ms", "beep_rel_db", "chatter", "peak_trim_db", "duration_ms",
]

# --------------------------------------------------------------------------------------
# Voices.  Held-out voices never appear in train/val (speech or chatter).
# --------------------------------------------------------------------------------------
ESPEAK_TRAIN_BASES = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"]
ESPEAK_HELDOUT_BASES = ["en-gb-scotland", "en-us-nyc"]
# "" = the base voice without a variant.  Variants that are silent aliases of the base
# ("Mr serious", "fast") or novelty effects (Demonic, whisper, robots...) are not used.
ESPEAK_TRAIN_VARIANTS = [
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m8", "f1", "f2", "f3", "f5",
    "klatt", "klatt2", "klatt3", "Annie", "Alicia", "Andrea", "anika", "steph", "steph3",
    "linda", "belinda", "aunty", "grandpa", "grandma", "Mike", "Michael", "Lee", "Gene",
    "Jacky", "Alex", "adam", "david", "rob", "robert", "paul", "max", "zac", "ed",
    "edward", "john", "travis", "victor", "norbert", "shelby", "quincy", "iven", "benjamin",
]
ESPEAK_HELDOUT_VARIANTS = ["m7", "f4", "Andy", "steph2", "klatt4", "edward2", "Gene2"]
FLITE_TRAIN = ["kal", "kal16", "awb"]
FLITE_HELDOUT = ["slt", "rms"]
FESTIVAL_TRAIN = ["kal_diphone", "ked_diphone"]
FESTIVAL_HELDOUT = ["cmu_us_slt_arctic_hts"]


def _espeak(bases, variants):
    return ["espeak:%s%s" % (b, ("+" + v) if v else "") for b in bases for v in variants]


def voice_pool(split):
    """(engine weight, voices) per engine for a split."""
    if split == "heldout":
        esp = (_espeak(ESPEAK_HELDOUT_BASES, ESPEAK_TRAIN_VARIANTS + ESPEAK_HELDOUT_VARIANTS)
               + _espeak(ESPEAK_TRAIN_BASES, ESPEAK_HELDOUT_VARIANTS))
        return [(0.40, esp),
                (0.40, ["flite:" + v for v in FLITE_HELDOUT]),
                (0.20, ["festival:" + v for v in FESTIVAL_HELDOUT])]
    return [(0.50, _espeak(ESPEAK_TRAIN_BASES, ESPEAK_TRAIN_VARIANTS)),
            (0.30, ["flite:" + v for v in FLITE_TRAIN]),
            (0.20, ["festival:" + v for v in FESTIVAL_TRAIN])]


def all_voices():
    seen = []
    for split in ("train", "heldout"):
        for _, voices in voice_pool(split):
            seen.extend(v for v in voices if v not in seen)
    return seen


def pick_voice(rng, split, exclude=()):
    pool = voice_pool(split)
    while True:
        r = rng.random()
        acc = 0.0
        voices = pool[-1][1]
        for w, vs in pool:
            acc += w
            if r < acc:
                voices = vs
                break
        v = rng.choice(voices)
        if v not in exclude:
            return v


# --------------------------------------------------------------------------------------
# Phrases
# --------------------------------------------------------------------------------------
PHRASE_FILES = ["human_pickup", "human_second", "human_business", "machine_personal",
                "machine_carrier", "machine_business", "machine_short", "names", "surnames",
                "companies", "hours", "chatter"]


def load_phrases(split):
    """{file: [(line_no, text), ...]} holding only the lines of this split's side."""
    want = "H" if split == "heldout" else "T"
    out = {}
    for name in PHRASE_FILES:
        rows = []
        with open(os.path.join(PHRASE_DIR, name + ".txt"), encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                tag, sep, text = line.partition("|")
                if not sep or tag not in ("T", "H"):
                    raise SystemExit("%s.txt:%d: expected 'T|text' or 'H|text'" % (name, no))
                if tag == want:
                    rows.append((no, text.strip()))
        if not rows:
            raise SystemExit("%s.txt has no %s lines" % (name, want))
        out[name] = rows
    return out


def check_phrase_split():
    """Refuse to run if any held-out line (after normalizing case/punctuation) also
    occurs on the train side of any phrase file: that would leak phrasings."""
    side = {}
    for name in PHRASE_FILES:
        with open(os.path.join(PHRASE_DIR, name + ".txt"), encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                tag, _, text = line.partition("|")
                key = " ".join("".join(c for c in text.lower() if c.isalnum() or c in " {}").split())
                side.setdefault(key, []).append((tag, "%s.txt:%d" % (name, no)))
    leaks = [v for v in side.values() if len({t for t, _ in v}) > 1]
    if leaks:
        raise SystemExit("phrase split leak (same text tagged T and H): %s" % leaks)


def phone_number(rng):
    d = lambda: str(rng.randrange(10))
    local = "5 5 5, %s %s %s %s" % (d(), d(), d(), d())
    if rng.random() < 0.5:
        return "%d %s %s, %s" % (rng.randrange(2, 10), d(), d(), local)
    return local


def fill(rng, phrases, category):
    no, tmpl = rng.choice(phrases[category])
    name = rng.choice(phrases["names"])[1]
    name2 = rng.choice([n for _, n in phrases["names"] if n != name])
    slots = {
        "name": name, "name2": name2,
        "surname": rng.choice(phrases["surnames"])[1],
        "company": rng.choice(phrases["companies"])[1],
        "hours": rng.choice(phrases["hours"])[1],
        "number": phone_number(rng),
    }
    return tmpl.format(**slots), "%s:%d" % (category, no)


# --------------------------------------------------------------------------------------
# TTS + sox
# --------------------------------------------------------------------------------------
def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s" % (
            p.returncode, " ".join(cmd), p.stderr.decode(errors="replace")[-2000:]))
    return p.stdout


def tts(voice, text, rng, tmpdir, tag):
    """Synthesize text; returns (wav path, parameter string)."""
    engine, _, name = voice.partition(":")
    txt = os.path.join(tmpdir, tag + ".txt")
    wav = os.path.join(tmpdir, tag + ".wav")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    if engine == "espeak":
        s, p = rng.randint(145, 185), rng.randint(30, 70)
        run(["espeak-ng", "-v", name, "-s", str(s), "-p", str(p), "-w", wav, "-f", txt])
        params = "s=%d p=%d" % (s, p)
    elif engine == "flite":
        st = round(rng.uniform(0.9, 1.12), 3)
        run(["flite", "-voice", name, "--setf", "duration_stretch=%s" % st, "-f", txt, "-o", wav])
        params = "stretch=%s" % st
    elif engine == "festival":
        st = round(rng.uniform(0.9, 1.12), 3)
        run(["text2wave", "-eval", "(voice_%s)" % name,
             "-eval", "(Parameter.set 'Duration_Stretch %s)" % st, txt, "-o", wav])
        params = "stretch=%s" % st
    else:
        raise ValueError(voice)
    return wav, params


def to_8k(wav, tempo, cents):
    """TTS wav -> float samples at 8 kHz with tempo/pitch perturbation (sox, repeatable)."""
    raw = run(["sox", "-R", "-D", wav, "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1",
               "-", "gain", "-6", "tempo", "-s", "%.3f" % tempo, "pitch", "%d" % cents,
               "rate", "-h", str(SR)])
    a = array.array("f")
    a.frombytes(raw)
    return list(a)


def frame_rms(x, n):
    out = []
    for i in range(0, len(x), n):
        fr = x[i:i + n]
        out.append(math.sqrt(sum(v * v for v in fr) / len(fr)) if fr else 0.0)
    return out


def trim_and_level(x, what):
    """Trim leading/trailing non-speech (5 ms frames, -40 dB re loudest frame);
    return (trimmed samples, active-speech RMS)."""
    fr = frame_rms(x, 5 * MS)
    peak = max(fr) if fr else 0.0
    if peak < 1e-3:
        raise RuntimeError("TTS produced no audible speech for %s" % what)
    thr = peak * 10 ** (-40 / 20)
    first = next(i for i, v in enumerate(fr) if v > thr)
    last = len(fr) - 1 - next(i for i, v in enumerate(reversed(fr)) if v > thr)
    y = x[first * 5 * MS:(last + 1) * 5 * MS]
    fr20 = frame_rms(y, 20 * MS)
    top = max(fr20)
    act = [v for v in fr20 if v > top * 10 ** (-30 / 20)]
    return y, math.sqrt(sum(v * v for v in act) / len(act))


def speech(voice, text, rng, tmpdir, tag, tempo, cents):
    wav, params = tts(voice, text, rng, tmpdir, tag)
    y, rms = trim_and_level(to_8k(wav, tempo, cents), "%s %r" % (voice, text))
    return y, rms, params


def bandlimit(x, lo, hi):
    raw = run(["sox", "-R", "-D", "-t", "raw", "-r", str(SR), "-e", "floating-point", "-b", "32",
               "-c", "1", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-",
               "sinc", "%d-%d" % (lo, hi)], input=array.array("f", x).tobytes())
    a = array.array("f")
    a.frombytes(raw)
    y = list(a)[:len(x)]
    return y + [0.0] * (len(x) - len(y))


# --------------------------------------------------------------------------------------
# DSP helpers (pure Python, seeded)
# --------------------------------------------------------------------------------------
def gen_noise(rng, kind, n):
    g = rng.gauss
    if kind == "white":
        x = [g(0.0, 1.0) for _ in range(n)]
    elif kind == "pink":  # Paul Kellet's refined pink filter
        b0 = b1 = b2 = b3 = b4 = b5 = b6 = 0.0
        x = [0.0] * n
        for i in range(n):
            w = g(0.0, 1.0)
            b0 = 0.99886 * b0 + w * 0.0555179
            b1 = 0.99332 * b1 + w * 0.0750759
            b2 = 0.96900 * b2 + w * 0.1538520
            b3 = 0.86650 * b3 + w * 0.3104856
            b4 = 0.55000 * b4 + w * 0.5329522
            b5 = -0.7616 * b5 - w * 0.0168980
            x[i] = b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362
            b6 = w * 0.115926
    else:  # brown (leaky integrator)
        y = 0.0
        x = [0.0] * n
        for i in range(n):
            y = 0.995 * y + g(0.0, 1.0)
            x[i] = y
    if n == 0:
        return x
    m = sum(x) / n
    x = [v - m for v in x]
    r = math.sqrt(sum(v * v for v in x) / n) or 1.0
    return [v / r for v in x]


def add(buf, start, sig, gain):
    end = min(len(buf), start + len(sig))
    for i in range(start, end):
        buf[i] += sig[i - start] * gain


def sine(freq, n, amp, fade):
    w = 2 * math.pi * freq / SR
    out = [amp * math.sin(w * i) for i in range(n)]
    fade = min(fade, n // 2)
    for i in range(fade):
        g = 0.5 - 0.5 * math.cos(math.pi * i / fade)
        out[i] *= g
        out[n - 1 - i] *= g
    return out


_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _ulaw_enc(s):
    """G.711 mu-law encoder, bit-exact with Sun's g711.c (as used by sox/audioop)."""
    s >>= 2
    if s < 0:
        s, mask = -s, 0x7F
    else:
        mask = 0xFF
    s = min(s, 8159) + 0x21
    seg = next((i for i, e in enumerate(_SEG_UEND) if s <= e), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((s >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_dec(u):
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


_ULAW_RT = None


def ulaw_roundtrip_table():
    global _ULAW_RT
    if _ULAW_RT is None:
        dec = [_ulaw_dec(u) for u in range(256)]
        _ULAW_RT = [dec[_ulaw_enc(s)] for s in range(-32768, 32768)]
    return _ULAW_RT


def db(x):
    return 20 * math.log10(x) if x > 0 else -200.0


# --------------------------------------------------------------------------------------
# Scenario schedule
# --------------------------------------------------------------------------------------
def quota(n, parts):
    """Split n into integer counts proportional to parts (largest remainder)."""
    raw = [(k, n * w) for k, w in parts]
    counts = {k: int(v) for k, v in raw}
    rest = n - sum(counts.values())
    for k, v in sorted(raw, key=lambda kv: -(kv[1] - int(kv[1])))[:rest]:
        counts[k] += 1
    return counts


def schedule(seed, split, per_class):
    h = quota(per_class, [("business_human", 0.20), ("pickup_chatter", 0.08), ("_pickup", 0.72)])
    hp = quota(h.pop("_pickup"), [("pickup", 0.70), ("pickup_second_hello", 0.30)])
    h.update(hp)
    m = quota(per_class, [("voicemail", 0.40), ("voicemail_short", 0.15),
                          ("carrier_default", 0.25), ("business_machine", 0.20)])
    items = []
    for kind in ("pickup", "pickup_second_hello", "business_human", "pickup_chatter"):
        items += [("human", kind)] * h[kind]
    for base, n in m.items():
        b = quota(n, [("beep", 0.80), ("nobeep", 0.20)])
        if base in ("voicemail", "voicemail_short"):
            items += [("machine", base + "_beep")] * b["beep"]
        else:
            items += [("machine", base)] * b["beep"]
        items += [("machine", base + "_nobeep")] * b["nobeep"]
    random.Random("amd-corpus|%s|%s|schedule" % (seed, split)).shuffle(items)
    return items


# --------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------
BEEP_FREQS = [440, 480, 600, 800, 850, 900, 950, 1000, 1004, 1200, 1400, 1500, 1800, 2000]


def make_clip(job):
    seed, split, index, label, kind, out_dir = job
    rng = random.Random("amd-corpus|%s|%s|%d" % (seed, split, index))
    phrases = load_phrases(split)
    fname = "%s_%05d.wav" % (split, index)
    voice = pick_voice(rng, split)
    tempo = round(rng.uniform(0.90, 1.15), 3)
    cents = rng.randint(-200, 200)
    level = rng.uniform(-30.0, -10.0)           # active-speech RMS, dBFS (re 1.0)
    target = 10 ** (level / 20)
    lead_ms = rng.randint(0, 1500)              # carrier silence before the answer
    gap_ms = rng.randint(100, 900)              # answer -> first speech
    chatter = kind == "pickup_chatter"

    with tempfile.TemporaryDirectory(prefix="amdcorpus-") as tmp:
        # ---- utterances and timeline (samples) ----
        events = []                              # (start, samples, gain)
        texts, templates = [], []
        category = {
            "pickup": "human_pickup", "pickup_second_hello": "human_pickup",
            "pickup_chatter": "human_pickup", "business_human": "human_business",
            "voicemail_beep": "machine_personal", "voicemail_nobeep": "machine_personal",
            "voicemail_short_beep": "machine_short", "voicemail_short_nobeep": "machine_short",
            "carrier_default": "machine_carrier", "carrier_default_nobeep": "machine_carrier",
            "business_machine": "machine_business", "business_machine_nobeep": "machine_business",
        }[kind]
        text, tmpl = fill(rng, phrases, category)
        y, rms, params = speech(voice, text, rng, tmp, "u1", tempo, cents)
        texts.append(text)
        templates.append(tmpl)
        t = (lead_ms + gap_ms) * MS
        onset_ms = lead_ms + gap_ms
        events.append((t, y, target / rms))
        t += len(y)
        beep = None
        if kind == "pickup_second_hello":
            t += int(rng.uniform(1.0, 2.5) * SR)
            text2, tmpl2 = fill(rng, phrases, "human_second")
            y2, rms2, _ = speech(voice, text2, rng, tmp, "u2", tempo, cents)
            texts.append(text2)
            templates.append(tmpl2)
            events.append((t, y2, target * 10 ** (rng.uniform(-2, 4) / 20) / rms2))
            t += len(y2)
        speech_end = t
        if label == "human":
            if kind == "pickup_second_hello":
                tail = rng.uniform(1.5, 3.5)
                tail = max(1.5, min(tail, 8.5 - t / SR))
            elif kind == "business_human":
                tail = rng.uniform(2.0, 4.0)
            else:
                tail = rng.uniform(2.0, 5.0)
                tail = max(tail, 4.0 - t / SR)            # clip >= 4 s
                tail = max(2.0, min(tail, 8.0 - t / SR))  # clip <= 8 s unless speech is long
            total = t + int(tail * SR)
        else:
            if kind.endswith("nobeep"):
                total = t + int(rng.uniform(1.5, 4.0) * SR)
            else:
                bstart = (t + int(rng.uniform(0.2, 1.2) * SR)) // MS * MS
                blen_ms = rng.randint(150, 1000)
                bfreq = rng.choice(BEEP_FREQS) if rng.random() < 0.6 else rng.randint(400, 2000)
                brel = rng.uniform(-6.0, 3.0)
                amp = min(0.9, math.sqrt(2) * target * 10 ** (brel / 20))
                bsig = sine(bfreq, blen_ms * MS, amp, rng.randint(2, 10) * MS)
                events.append((bstart, bsig, 1.0))
                beep = (bstart // MS, bfreq, blen_ms, brel)
                total = bstart + blen_ms * MS + int(rng.uniform(1.0, 2.0) * SR)

        # ---- background chatter (other voices in the callee's room) ----
        chat_desc = ""
        if chatter:
            answer = lead_ms * MS
            vs = []
            for k in range(rng.randint(2, 3)):
                cv = pick_voice(rng, split, exclude=[voice] + vs)
                vs.append(cv)
                ctext = rng.choice(phrases["chatter"])[1]
                cy, crms, _ = speech(cv, ctext, rng, tmp, "c%d" % k, round(rng.uniform(0.9, 1.15), 3),
                                     rng.randint(-200, 200))
                start = rng.randint(answer, max(answer, total - SR // 2))
                crel = rng.uniform(-20.0, -8.0)
                events.append((start, cy, target * 10 ** (crel / 20) / crms))
            chat_desc = "|".join(vs)

        # ---- mix ----
        buf = [0.0] * total
        for start, sig, gain in events:
            add(buf, start, sig, gain)
        answer = lead_ms * MS
        ntype = rng.choice(["white", "pink", "brown"])
        if chatter:
            snr = rng.uniform(10.0, 20.0)
        elif rng.random() < 0.15:
            snr = rng.uniform(45.0, 60.0)       # almost clean line
        else:
            snr = rng.uniform(15.0, 40.0)
        add(buf, answer, gen_noise(rng, ntype, total - answer), target / 10 ** (snr / 20))
        if rng.random() < 0.3:
            comfort = None                      # digital silence before the answer
        else:
            comfort = rng.uniform(-75.0, -55.0)
            add(buf, 0, gen_noise(rng, "white", answer), 10 ** (comfort / 20))

        # ---- channel: band limit, peak guard, frame loss, mu-law ----
        lo, hi = rng.randint(250, 350), rng.randint(3250, 3500)
        pk = max(abs(v) for v in buf)
        pre = 0.9 / pk if pk > 0.9 else 1.0     # keep sox's float path away from clipping
        if pre != 1.0:
            buf = [v * pre for v in buf]
        buf = bandlimit(buf, lo, hi)
        pk = max(abs(v) for v in buf)
        post = 0.97 / pk if pk > 0.97 else 1.0
        loss = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 3.0)
        fr = 20 * MS
        for i in range(0, total, fr):
            if rng.random() < loss / 100:
                for j in range(i, min(total, i + fr)):
                    buf[j] = 0.0
        rt = ulaw_roundtrip_table()
        g = 32767 * post
        pcm = array.array("h", [rt[max(-32768, min(32767, int(round(v * g)))) + 32768] for v in buf])
        if sys.byteorder == "big":
            pcm.byteswap()
        with wave.open(os.path.join(out_dir, fname), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SR)
            w.writeframes(pcm.tobytes())

    row = [fname, label, "" if beep is None else beep[0], voice, " / ".join(texts), kind,
           lead_ms, onset_ms]
    meta = [fname, " ".join(templates), params, tempo, cents, round(level + db(pre * post), 1), gap_ms,
            speech_end // MS, ntype, round(snr, 1), "" if comfort is None else round(comfort, 1),
            "%d-%d" % (lo, hi), round(loss, 2),
            "" if beep is None else beep[1], "" if beep is None else beep[2],
            "" if beep is None else round(beep[3], 1), chat_desc,
            round(db(pre * post), 1), total // MS]
    return row, meta, total / SR


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def _init_worker(nice):
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass


def generate_split(out, split, per_class, seed, jobs, nice):
    t0 = time.time()
    d = os.path.join(out, split)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):  # drop stale output of an earlier run of this split
        if (f.startswith(split + "_") and f.endswith(".wav")) or f in ("labels.csv", "channel.csv"):
            os.remove(os.path.join(d, f))
    items = schedule(seed, split, per_class)
    work = [(seed, split, i, label, kind, d) for i, (label, kind) in enumerate(items)]
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(nice,)) as ex:
        results = list(ex.map(make_clip, work, chunksize=1))
    with open(os.path.join(d, "labels.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LABEL_HEADER)
        w.writerows(r[0] for r in results)
    with open(os.path.join(d, "channel.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CHANNEL_HEADER)
        w.writerows(r[1] for r in results)
    kinds = Counter(r[0][5] for r in results)
    labels = Counter(r[0][1] for r in results)
    secs = sum(r[2] for r in results)
    print("%s: %d clips (human %d, machine %d) | %s | %.1f s audio | wall %.1f s | %s" % (
        split, len(results), labels["human"], labels["machine"],
        " ".join("%s=%d" % kv for kv in sorted(kinds.items())), secs, time.time() - t0, d),
        flush=True)


def check_voices(split_filter):
    """Synthesize a test sentence with every voice; report the ones that produce no audio."""
    bad = []
    voices = all_voices() if split_filter == "all" else \
        [v for _, vs in voice_pool(split_filter) for v in vs]
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="amdcorpus-check-") as tmp:
        for i, v in enumerate(voices):
            try:
                y, rms, _ = speech(v, "Hello, you've reached the voicemail of John.", rng, tmp,
                                   "v%d" % i, 1.0, 0)
                print("ok   %-40s %.2f s  %.1f dBFS" % (v, len(y) / SR, db(rms)))
            except Exception as e:  # noqa: BLE001 - report every failure
                bad.append(v)
                print("FAIL %-40s %s" % (v, str(e).splitlines()[0]))
    print("%d voices checked, %d failed%s" % (len(voices), len(bad), (": " + " ".join(bad)) if bad else ""))
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (writes OUT/<split>/)")
    ap.add_argument("--split", default="all", choices=list(SPLITS) + ["all"])
    ap.add_argument("--per-class", type=int, default=100, help="clips per class (human, machine) per split")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="parallel worker processes (each runs one TTS at a time)")
    ap.add_argument("--nice", type=int, default=0, help="raise worker niceness by this much")
    ap.add_argument("--check-voices", action="store_true",
                    help="synthesize a test phrase with every voice of --split and exit")
    a = ap.parse_args(argv)
    if a.check_voices:
        return check_voices(a.split)
    if a.per_class < 1 or a.jobs < 1:
        ap.error("--per-class and --jobs must be >= 1")
    splits = SPLITS if a.split == "all" else (a.split,)
    check_phrase_split()
    for s in splits:
        load_phrases(s)  # fail fast on malformed phrase files
    for s in splits:
        generate_split(a.out, s, a.per_class, a.seed, a.jobs, a.nice)
    return 0


if __name__ == "__main__":
    sys.exit(main())
