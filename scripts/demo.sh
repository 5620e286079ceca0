#!/usr/bin/env bash
# A small campaign, end to end, on this machine only (127.0.0.1):
#
#   sipp plays the carrier's far end: numbers ending in 6 or 7 are busy, 8 never answers,
#   9 declines, 4 and 5 reach a voicemail greeting with its beep, every other number is a
#   person who answers ("Hello? Yes, speaking." and waits). Answering-machine detection (auto:
#   ML + transcript) tells them apart: people hear the message, machines get the voicemail
#   message after the beep. outdial serve runs the campaign on
#   the embedded SQLite store (a fresh file in the demo's work dir) with its admin API on
#   127.0.0.1. The demo makes an API key, creates a campaign, imports a CSV through the API,
#   starts it, shows progress each second and, once it has finished, prints every contact's
#   final status and attempts. Then it stops everything it started.
#
# Needs: target/debug/outdial (make build), sipp, espeak-ng, sox, curl (make setup).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${OUTDIAL_BIN:-$repo/target/debug/outdial}"
scenario="$repo/tests/scenarios/uas_by_number.xml"

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin not found: run 'make build' first"
[ -f "$scenario" ] || die "missing $scenario"
for tool in sipp espeak-ng sox curl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not installed: run 'make setup'"
done

# shellcheck source=scripts/ports.sh
. "$repo/scripts/ports.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/outdial-demo.XXXXXX")"
cd "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "demo: working in $work"

# --- audio: what we play to people, what the far end says ---------------------------------------
espeak-ng -v en-us -s 150 -w msg.raw.wav \
  "Hello, this is a reminder from the outdial demonstration. Thank you, and goodbye."
sox msg.raw.wav -r 8000 -c 1 -b 16 -e signed-integer message.wav pad 0.2 0.3
espeak-ng -v en-us -s 150 -w far.raw.wav "Hello? Yes, speaking."
sox far.raw.wav -r 8000 -c 1 -t ul stream.ulaw pad 0.1 3
espeak-ng -v en-us -s 150 -w vm.raw.wav \
  "Hi, you have reached Mary. I can't take your call right now. Please leave a message after the tone."
sox vm.raw.wav -r 8000 -c 1 -b 16 -e signed-integer greeting.wav pad 0.3 0.6
sox -n -r 8000 -c 1 -b 16 -e signed-integer beep.wav synth 0.5 sine 1000 vol 0.3 pad 0 4
sox greeting.wav beep.wav -t ul voicemail.ulaw
espeak-ng -v en-us -s 150 -w vmmsg.raw.wav \
  "Hello, this is the outdial demonstration leaving you a voicemail. Goodbye."
sox vmmsg.raw.wav -r 8000 -c 1 -b 16 -e signed-integer voicemail.wav pad 0.2 0.3
rm -f msg.raw.wav far.raw.wav vm.raw.wav vmmsg.raw.wav greeting.wav beep.wav
# Campaigns name files of the media directory (media/ beside outdial serve), not paths.
mkdir -p media && cp message.wav voicemail.wav media/

# --- the far end: one sipp for every number -----------------------------------------------------
sip_port=$(free_ports 1)
media_port=$(free_ports 4)
sipp -sf "$scenario" -t u1 -i 127.0.0.1 -mi 127.0.0.1 -p "$sip_port" -mp "$media_port" \
  -nostdin -trace_err -error_file sipp_errors.log >sipp_screen.log 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do port_in_use "$sip_port" && break; sleep 0.1; done
port_in_use "$sip_port" || die "sipp did not start; see $work/sipp_screen.log"
echo "demo: far end (sipp) on 127.0.0.1:$sip_port"

# --- outdial: config, a trunk to the far end, an API key, the server ----------------------------
http_port=$(free_ports 1)
rtp_base=$(free_ports 40)
mkdir -p sip-profiles
cat > sip-profiles/demo-carrier.toml <<EOT
proxy = "127.0.0.1:$sip_port"
EOT
cat > outdial.toml <<EOT
[sip]
listen_udp = "127.0.0.1:0"
listen_tcp = false

[rtp]
bind_addr = "127.0.0.1"
port_min = $rtp_base
port_max = $((rtp_base + 39))

[database]
url = "sqlite://$work/outdial.db"

[http]
listen = "127.0.0.1:$http_port"
EOT
od() { env -u RUST_LOG "$bin" --config outdial.toml --profiles sip-profiles "$@"; }

key=$(od keys create --login demo --name "Demo admin")
echo "demo: API key made for login 'demo' (printed once by 'outdial keys create')"

od serve >serve.log 2>&1 &
pids+=($!)
api="http://127.0.0.1:$http_port"
for _ in $(seq 1 100); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$api/healthz" >/dev/null || die "outdial serve did not come up; see $work/serve.log"
echo "demo: outdial serve: admin API on $api, SIP and RTP on 127.0.0.1, store $work/outdial.db"

call() { # METHOD PATH [curl args...]
  local method=$1 path=$2; shift 2
  curl -fsS -X "$method" -H "Authorization: Bearer $key" "$api$path" "$@"
}
json_field() { # crude: the first "FIELD":NUMBER in stdin
  grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}

# --- the campaign -------------------------------------------------------------------------------
campaign=$(call POST /v1/campaigns -H 'Content-Type: application/json' -d @- <<EOT | json_field id
{"name": "Demo reminders", "description": "make demo", "pace": 120, "max_concurrent": 3,
 "ring_timeout_secs": 4, "ring_timeout_override": true, "max_retries": 1,
 "retry_interval": {"value": 3, "unit": "seconds"}, "play_message": "message.wav",
 "amd_mode": "auto", "machine_action": "leave_message", "voicemail_message": "voicemail.wav",
 "caller_id": "+12025550100", "sip_profile": "demo-carrier", "default_country": "US"}
EOT
)
[ -n "$campaign" ] || die "campaign not created"
echo "demo: campaign $campaign created"

cat > contacts.csv <<'EOT'
12025550101,John Doe,Google Ads
12025550102,Jane Smith,Website visitor
12025550103,Peter Jones,Whatsapp query
12025550104,Mary Voicemail,voicemail greeting
12025550105,Max Mailbox,voicemail greeting
12025550106,Busy Bee,always busy
12025550108,Nobody Home,never answers
12025550109,Dee Clined,declines
not-a-number,Bad Row,shows a per-row error
EOT
echo "demo: importing contacts.csv (9 rows, one of them bad):"
call POST "/v1/campaigns/$campaign/contacts/import" -H 'Content-Type: text/csv' \
  --data-binary @contacts.csv
echo

call POST "/v1/campaigns/$campaign/start" >/dev/null
echo "demo: campaign $campaign started; progress:"
status=""
for i in $(seq 1 120); do
  sleep 1
  show=$(od campaign show "$campaign")
  status=$(echo "$show" | head -1 | sed 's/.*: \([a-z_]*\) (pace.*/\1/')
  echo "  ${i}s: $status; $(echo "$show" | sed -n 2p)"
  [ "$status" = finished ] && break
done

echo
echo "demo: final status of every contact:"
od contacts list --campaign "$campaign"
echo
echo "demo: logs: $work/serve.log, $work/sipp_errors.log"
[ "$status" = finished ] || die "the campaign did not finish in 120 s"
echo "demo: done"
