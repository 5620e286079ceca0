#!/usr/bin/env bash
# One real outbound call, end to end, on this machine only (127.0.0.1):
#
#   sipp answers as the far end (100, 180, 200 with SDP), talks (streams speech as µ-law RTP)
#   and waits for our BYE; outdial dials it, plays a spoken prompt, records what it hears,
#   hangs up when the prompt is done and prints the call result as JSON.
#
# Needs: target/debug/outdial (make build), sipp, espeak-ng, sox (make setup).
# Leaves its files (the recording, sipp's logs) in a temp dir it prints at the end.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${OUTDIAL_BIN:-$repo/target/debug/outdial}"
scenario="$repo/tests/scenarios/uas_answer_audio.xml"

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin not found: run 'make build' first"
[ -f "$scenario" ] || die "missing $scenario"
for tool in sipp espeak-ng sox; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not installed: run 'make setup'"
done

# --- ports ------------------------------------------------------------------------------------

# shellcheck source=scripts/ports.sh
. "$repo/scripts/ports.sh"

# --- work dir and audio -----------------------------------------------------------------------

work="$(mktemp -d "${TMPDIR:-/tmp}/outdial-demo.XXXXXX")"
cd "$work"
sipp_pid=""
cleanup() {
  if [ -n "$sipp_pid" ] && kill -0 "$sipp_pid" 2>/dev/null; then
    kill "$sipp_pid" 2>/dev/null || true
    wait "$sipp_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: working in $work"

# What we say: 8 kHz mono 16-bit speech, with a little silence around it.
espeak-ng -v en-us -s 150 -w prompt.raw.wav \
  "Hello, this is outdial, calling with a short demonstration message. Thank you, and goodbye."
sox prompt.raw.wav -r 8000 -c 1 -b 16 -e signed-integer speech.wav pad 0.3 0.5
# What the far end says: sipp 3.6.1 streams the file's bytes as-is, so raw µ-law, no header.
espeak-ng -v en-us -s 150 -w far.raw.wav \
  "Hi, you have reached the demo line. This is the far end talking back to you."
sox far.raw.wav -r 8000 -c 1 -b 16 -e signed-integer far_end.wav pad 0.2 0.3
sox far_end.wav -t ul stream.ulaw
rm -f prompt.raw.wav far.raw.wav

# --- the far end: sipp UAS --------------------------------------------------------------------

cp "$scenario" uas.xml
for attempt in 1 2 3 4 5; do
  sip_port=$(free_ports 1)
  media_port=$(free_ports 4)   # sipp binds media_port and media_port + 2
  ctrl_port=$(free_ports 1)
  sipp -sf uas.xml -t u1 -i 127.0.0.1 -mi 127.0.0.1 -p "$sip_port" -mp "$media_port" \
    -cp "$ctrl_port" -m 1 -nostdin -timeout 60s \
    -trace_msg -message_file sipp_messages.log -trace_err -error_file sipp_errors.log \
    >sipp_screen.log 2>&1 &
  sipp_pid=$!
  for _ in $(seq 1 50); do
    if port_in_use "$sip_port" || ! kill -0 "$sipp_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if kill -0 "$sipp_pid" 2>/dev/null && port_in_use "$sip_port"; then break; fi
  cleanup
  sipp_pid=""
  [ "$attempt" = 5 ] && die "sipp did not start; see $work/sipp_screen.log"
done
echo "demo: sipp (far end) listening on 127.0.0.1:$sip_port, media port $media_port"

# --- the call ---------------------------------------------------------------------------------

rtp_base=$(free_ports 20)
echo "demo: outdial call sip:demo@127.0.0.1:$sip_port --play speech.wav --record received.wav --max-duration 8 --json"
set +e
env -u RUST_LOG OUTDIAL_SIP_LISTEN=127.0.0.1:0 OUTDIAL_RTP_PORTS="$rtp_base-$((rtp_base + 19))" \
  timeout 30 "$bin" call "sip:demo@127.0.0.1:$sip_port" \
  --play speech.wav --record received.wav --max-duration 8 --json >result.json 2>outdial_stderr.log
call_rc=$?
set -e

echo
echo "call result (JSON):"
cat result.json
echo
if [ "$call_rc" != 0 ]; then
  echo "demo: outdial exited with $call_rc; its stderr:" >&2
  cat outdial_stderr.log >&2
fi

# --- the far end's verdict --------------------------------------------------------------------

sipp_rc=""
for _ in $(seq 1 150); do
  if ! kill -0 "$sipp_pid" 2>/dev/null; then
    set +e
    wait "$sipp_pid"
    sipp_rc=$?
    set -e
    sipp_pid=""
    break
  fi
  sleep 0.1
done

if [ -f received.wav ]; then
  echo "recording of what the far end said: $work/received.wav"
else
  echo "no recording was written ($work/received.wav missing)"
fi
echo "sipp logs: $work/sipp_messages.log, $work/sipp_errors.log"

if [ -z "$sipp_rc" ]; then
  echo "sipp: scenario did not finish within 15 s (no BYE from us?): FAILED"
  exit 1
elif [ "$sipp_rc" = 0 ]; then
  echo "sipp: scenario passed (it got our ACK and our BYE)"
else
  echo "sipp: scenario FAILED (exit $sipp_rc); see $work/sipp_errors.log"
fi
[ "$call_rc" = 0 ] && [ "$sipp_rc" = 0 ]
