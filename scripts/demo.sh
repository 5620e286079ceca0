#!/usr/bin/env bash
# Two small campaigns, end to end, on this machine only (127.0.0.1), whose answered people are
# bridged to a pool of two agents:
#
#   sipp plays the carrier's far end: numbers ending in 6 or 7 are busy, 8 never answers,
#   9 declines, 4 and 5 reach a voicemail greeting with its beep, every other number is a
#   person who answers ("Hello? Yes, speaking." and waits). Answering-machine detection (auto:
#   ML + transcript) tells them apart: machines get the voicemail message after the beep,
#   people are bridged to the agent pool "demo-agents".
#
#   The agents, Alice and Bob, are two baresip phones that answer at once, say their line
#   (a WAV) and record what they hear; baresip hangs up when its line ends, so the WAV's
#   length is the talk time: Alice talks about 4 s, Bob about 13 s.
#
# How more people than agents answer at once (the honest way a pool gets crowded): both
# campaigns connect to the same pool and pace `progressive`, which dials one call per free
# agent; each campaign paces as if it had the pool alone. "Demo reminders" (people John and
# Jane first, then the machines, busy, unanswered and declined numbers) and "Demo callbacks"
# (people Peter and Paul) are started together while both agents are free, so each dials its
# two people: four people answer within a second of each other (sipp answers every person
# 300 ms after the INVITE) and AMD calls them people together, ~3 s later. Two of them take
# Alice and Bob; the other two queue (`queue_timeout_secs` 6). Alice is free again after
# ~4 s and the first person to look for an agent takes her: that person is QUEUED (waited
# ~4 s, then talked). Alice is busy again until ~8 s and Bob until ~13 s, so the fourth
# person's 6 s run out first: ABANDONED, they hear the campaigns' abandon message and are
# hung up on. (About 2 s of slack on both sides of the 6 s.)
# Which of the four names lands where changes from run to run; that two are bridged at
# once, one is queued and one abandoned does not. (The FTC TSR counts a person not
# connected within 2 s of their greeting as abandoned even when an agent took them later,
# so the campaign reports count the queued person as abandoned too.) The demo fails when a
# run does not show exactly that. The rest of "Demo reminders" (machines, busy, no answer,
# declined) is dialed as agents free up: progressive pacing cannot know who will answer.
#
# outdial serve runs both campaigns on the embedded SQLite store (a fresh file in the demo's
# work dir) with its admin API on 127.0.0.1. The demo makes an API key, the two agents and
# the pool, creates the campaigns, imports their CSVs through the API, starts them, shows
# progress each second and, once both have finished, prints every contact's final status,
# every attempt's agent leg (agent, queue wait, talk time, abandoned, who hung up), the
# agents' talk time and the campaigns' abandon rates. Then it stops everything it started.
#
# Needs: target/debug/outdial (make build), sipp, baresip, espeak-ng, sox, curl, python3
# (make setup).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${OUTDIAL_BIN:-$repo/target/debug/outdial}"
scenario="$repo/tests/scenarios/uas_by_number.xml"

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin not found: run 'make build' first"
[ -f "$scenario" ] || die "missing $scenario"
for tool in sipp baresip espeak-ng sox curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not installed: run 'make setup'"
done
baresip_modules=""
for dir in /usr/lib/baresip/modules /usr/local/lib/baresip/modules /usr/lib/*/baresip/modules; do
  if [ -f "$dir/g711.so" ] && [ -f "$dir/aufile.so" ]; then baresip_modules=$dir; break; fi
done
[ -n "$baresip_modules" ] || die "baresip modules (g711.so, aufile.so) not found: run 'make setup'"

# shellcheck source=scripts/ports.sh
. "$repo/scripts/ports.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/outdial-demo.XXXXXX")"
cd "$work"
pids=()
cleanup() { # newest first: the server hangs up its calls while its peers are still there
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true # still there after 10 s
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "demo: working in $work"

# --- audio: what the far end says, what agents say, what machines and abandoned people hear ---
# a person: a short "hello" and a pause (AMD's cue for a person), then a few words every
# couple of seconds, so that the agent who takes the call, even late, hears (and records) them
espeak-ng -v en-us -s 150 -w far.raw.wav "Hello? Yes, speaking."
espeak-ng -v en-us -s 150 -w still.raw.wav "Yes, I am still here."
sox far.raw.wav -r 8000 -c 1 -b 16 -e signed-integer far.wav pad 0.1 3
sox still.raw.wav -r 8000 -c 1 -b 16 -e signed-integer still.wav pad 0 1.5
sox far.wav still.wav still.wav still.wav still.wav still.wav still.wav still.wav still.wav \
  -t ul stream.ulaw
espeak-ng -v en-us -s 150 -w vm.raw.wav \
  "Hi, you have reached Mary. I can't take your call right now. Please leave a message after the tone."
sox vm.raw.wav -r 8000 -c 1 -b 16 -e signed-integer greeting.wav pad 0.3 0.6
sox -n -r 8000 -c 1 -b 16 -e signed-integer beep.wav synth 0.5 sine 1000 vol 0.3 pad 0 4
sox greeting.wav beep.wav -t ul voicemail.ulaw
espeak-ng -v en-us -s 150 -w vmmsg.raw.wav \
  "Hello, this is the outdial demonstration leaving you a voicemail. Goodbye."
sox vmmsg.raw.wav -r 8000 -c 1 -b 16 -e signed-integer voicemail.wav pad 0.2 0.3
espeak-ng -v en-us -s 150 -w abandon.raw.wav \
  "Sorry, all our agents are busy. This was the outdial demonstration. Please call us back. Goodbye."
sox abandon.raw.wav -r 8000 -c 1 -b 16 -e signed-integer abandon.wav pad 0.2 0.3
# agent lines, padded then cut to an exact length (-V1: sox warns that the cut drops padding):
# baresip hangs up when its line ends
espeak-ng -v en-us -s 170 -w alice.raw.wav "Hi, Alice here. Thanks, that's all. Bye."
sox -V1 alice.raw.wav -r 8000 -c 1 -b 16 -e signed-integer alice.wav pad 0.2 20 trim 0 4
espeak-ng -v en-us -s 150 -w bob.raw.wav \
  "Hello, this is Bob from the outdial demonstration. I am calling about your reminder. \
Thank you for your time, and have a nice day."
sox -V1 bob.raw.wav -r 8000 -c 1 -b 16 -e signed-integer bob.wav pad 0.2 20 trim 0 13
rm -f far.raw.wav still.raw.wav far.wav still.wav vm.raw.wav vmmsg.raw.wav abandon.raw.wav \
  alice.raw.wav bob.raw.wav greeting.wav beep.wav
# Campaigns name files of the media directory (media/ beside outdial serve), not paths.
mkdir -p media && cp voicemail.wav abandon.wav media/

# --- the far end: one sipp for every number -----------------------------------------------------
sip_port=$(free_ports 1)
media_port=$(free_ports 4)
sipp -sf "$scenario" -t u1 -i 127.0.0.1 -mi 127.0.0.1 -p "$sip_port" -mp "$media_port" \
  -nostdin -trace_err -error_file sipp_errors.log >sipp_screen.log 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do port_in_use "$sip_port" && break; sleep 0.1; done
port_in_use "$sip_port" || die "sipp did not start; see $work/sipp_screen.log"
echo "demo: far end (sipp) on 127.0.0.1:$sip_port"

# --- the agents: two auto-answering baresip phones ----------------------------------------------
# One block of RTP ports for everybody, so that no two pick overlapping ranges: outdial's
# 60, then 20 for each agent.
rtp_block=$(free_ports 100)
start_agent() { # NAME RTP_BASE: starts it, sets agent_port
  local name=$1 rtp=$2 port dir
  port=$(free_ports 2) # SIP (UDP, TCP) and TLS on the next port
  dir="$work/agent-$name"
  mkdir -p "$dir/rec"
  cat > "$dir/config" <<EOT
poll_method		epoll
sip_listen		127.0.0.1:$port
call_local_timeout	120
call_max_calls		4
audio_player		aubridge,nil
audio_source		aufile,$work/$name.wav
audio_alert		aubridge,nil
audio_level		no
audio_buffer		20-160
rtp_ports		$rtp-$((rtp + 19))
rtcp_mux		no
jitter_buffer_delay	5-10
net_interface		127.0.0.1
module_path		$baresip_modules
module			g711.so
module			aufile.so
module			aubridge.so
module			sndfile.so
module_tmp		account.so
snd_path		$dir/rec
EOT
  echo "<sip:$name@127.0.0.1>;regint=0;answermode=auto;audio_codecs=pcmu,pcma" > "$dir/accounts"
  baresip -f "$dir" </dev/null >"$dir/baresip.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do port_in_use "$port" && break; sleep 0.1; done
  port_in_use "$port" || die "baresip ($name) did not start; see $dir/baresip.log"
  agent_port=$port
}
start_agent alice $((rtp_block + 60))
alice_port=$agent_port
start_agent bob $((rtp_block + 80))
bob_port=$agent_port
echo "demo: agents (baresip) Alice on 127.0.0.1:$alice_port, Bob on 127.0.0.1:$bob_port"

# --- outdial: config, a trunk to the far end, an API key, the server ----------------------------
http_port=$(free_ports 1)
rtp_base=$rtp_block
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
port_max = $((rtp_base + 59))

[database]
url = "sqlite://$work/outdial.db"

[http]
listen = "127.0.0.1:$http_port"
EOT
od() { env -u RUST_LOG "$bin" --config outdial.toml --profiles sip-profiles "$@"; }

key=$(od keys create --login demo --name "Demo admin")
echo "demo: API key made for login 'demo' (printed once by 'outdial keys create')"

# not through od(): a function runs in a subshell when put in the background, and $! would be
# that subshell, not the server (killing it would leave the server running)
env -u RUST_LOG "$bin" --config outdial.toml --profiles sip-profiles serve >serve.log 2>&1 &
server_pid=$!
pids+=($server_pid)
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
post_json() { # PATH JSON: prints the new object's id
  call POST "$1" -H 'Content-Type: application/json' -d "$2" | json_field id
}

# --- the agent pool -----------------------------------------------------------------------------
alice=$(post_json /v1/agents/sip \
  "{\"name\": \"Alice\", \"target\": \"sip:alice@127.0.0.1:$alice_port\", \"state\": \"available\"}")
bob=$(post_json /v1/agents/sip \
  "{\"name\": \"Bob\", \"target\": \"sip:bob@127.0.0.1:$bob_port\", \"state\": \"available\"}")
[ -n "$alice" ] && [ -n "$bob" ] || die "agents not created"
pool=$(post_json /v1/agents/pools "{\"name\": \"demo-agents\", \"agent_ids\": [$alice, $bob]}")
[ -n "$pool" ] || die "agent pool not created"
echo "demo: agents Alice ($alice) and Bob ($bob), available, in pool 'demo-agents'"

# --- the campaigns ------------------------------------------------------------------------------
new_campaign() { # NAME DESCRIPTION: prints the id
  post_json /v1/campaigns "$(cat <<EOT
{"name": "$1", "description": "$2", "pace": 300, "max_concurrent": 4,
 "connect_to": "demo-agents", "pacing": "progressive", "queue_timeout_secs": 6,
 "agent_ring_timeout_secs": 5, "abandon_message": "abandon.wav",
 "ring_timeout_secs": 4, "ring_timeout_override": true, "max_retries": 1,
 "retry_interval": {"value": 3, "unit": "seconds"},
 "amd_mode": "auto", "machine_action": "leave_message", "voicemail_message": "voicemail.wav",
 "caller_id": "+12025550100", "sip_profile": "demo-carrier", "default_country": "US"}
EOT
)"
}
import_csv() { # CAMPAIGN FILE
  call POST "/v1/campaigns/$1/contacts/import" -H 'Content-Type: text/csv' --data-binary "@$2"
  echo
}
reminders=$(new_campaign "Demo reminders" "make demo: people, machines, busy, no answer")
callbacks=$(new_campaign "Demo callbacks" "make demo: two more people for the same agents")
[ -n "$reminders" ] && [ -n "$callbacks" ] || die "campaigns not created"
echo "demo: campaigns $reminders (Demo reminders) and $callbacks (Demo callbacks) created"

cat > reminders.csv <<'EOT'
12025550101,John Doe,Google Ads
12025550102,Jane Smith,Website visitor
12025550104,Mary Voicemail,voicemail greeting
12025550105,Max Mailbox,voicemail greeting
12025550106,Busy Bee,always busy
12025550108,Nobody Home,never answers
12025550109,Dee Clined,declines
not-a-number,Bad Row,shows a per-row error
EOT
cat > callbacks.csv <<'EOT'
12025550103,Peter Jones,Whatsapp query
12025550110,Paul Green,callback request
EOT
echo "demo: importing reminders.csv (8 rows, one of them bad):"
import_csv "$reminders" reminders.csv
echo "demo: importing callbacks.csv (2 rows):"
import_csv "$callbacks" callbacks.csv

call POST "/v1/campaigns/$reminders/start" >/dev/null
call POST "/v1/campaigns/$callbacks/start" >/dev/null
echo "demo: both campaigns started; progress:"
progress() { # CAMPAIGN: prints "STATUS (CALLS)"
  local show
  show=$(od campaign show "$1")
  status=$(echo "$show" | sed -n 1p | sed 's/.*: \([a-z_]*\) (pace.*/\1/')
  echo "$status ($(echo "$show" | sed -n 2p | sed 's/^calls: //'))"
}
s1="" s2=""
for i in $(seq 1 120); do
  sleep 1
  line1=$(progress "$reminders")
  s1=${line1%% *}
  line2=$(progress "$callbacks")
  s2=${line2%% *}
  echo "  ${i}s: reminders $line1; callbacks $line2"
  [ "$s1" = finished ] && [ "$s2" = finished ] && break
done

echo
for c in "$reminders" "$callbacks"; do
  echo "demo: final status of every contact of campaign $c:"
  od contacts list --campaign "$c"
  echo
done

# --- what the agents did, from the API -----------------------------------------------------------
for c in "$reminders" "$callbacks"; do
  call GET "/v1/campaigns/$c/contacts?limit=100" > "contacts-$c.json"
  call GET "/v1/campaigns/$c/attempts?limit=100" > "attempts-$c.json"
  call GET "/v1/campaigns/$c/report" > "report-$c.json"
done
call GET /v1/agents/sip > agents.json
shape=ok
python3 - "$reminders" "$callbacks" <<'EOT' || shape=off
import json, sys

NAMES = {sys.argv[1]: "Demo reminders", sys.argv[2]: "Demo callbacks"}
TSR_MS = 2000  # connected later than this after the greeting: abandoned in the TSR's sense

def items(doc):
    return doc if isinstance(doc, list) else doc.get("items", [])

def secs(ms):
    return "-" if ms is None else f"{ms / 1000:.1f} s"

seen = {"bridged at once": 0, "queued, then bridged": 0, "abandoned": 0}
print("demo: the people who answered (attempts from the API) and their agent leg:")
print(f"  {'campaign':<15} {'contact':<12} {'agent':<6} {'queue wait':>10} {'talk':>7} "
      f"{'call':>7} {'abandoned':<9} {'ended by':<8} what happened")
for c, cname in NAMES.items():
    contacts = {x["id"]: x for x in items(json.load(open(f"contacts-{c}.json")))}
    for a in sorted(items(json.load(open(f"attempts-{c}.json"))), key=lambda a: a["id"]):
        if a.get("answered_by") != "human" and a.get("agent_name") is None:
            continue
        who = contacts.get(a.get("contact_id"), {}).get("name", a["destination"])
        wait = a.get("queue_wait_ms")
        if a.get("agent_name") and a.get("talk_ms") is not None:
            what = "bridged at once" if (wait or 0) <= TSR_MS else "queued, then bridged"
        elif a.get("abandoned"):
            what = "abandoned"
        else:
            what = "not bridged"
        seen[what] = seen.get(what, 0) + 1
        note = {"queued, then bridged": " (waited for an agent to free up)",
                "abandoned": " (no agent within the queue timeout: heard the abandon message)"}
        print(f"  {cname:<15} {who:<12} {a.get('agent_name') or '-':<6} {secs(wait):>10} "
              f"{secs(a.get('talk_ms')):>7} {secs(a.get('duration_ms')):>7} "
              f"{'yes' if a.get('abandoned') else 'no':<9} {a.get('ended_by') or '-':<8} "
              f"{what}{note.get(what, '')}")
print()
print("demo: the agents (from the API):")
for agent in items(json.load(open("agents.json"))):
    calls = agent.get("calls", 0)
    print(f"  {agent['name']:<6} {calls} call{'s' if calls != 1 else ''}, "
          f"{agent.get('talk_ms', 0) / 1000:.1f} s talk time, now {agent.get('state')}")
print()
print("demo: abandon rate (campaign reports; the FTC TSR counts every person not connected")
print("      within 2 s of their greeting, so a queued person counts too):")
total_people = total_abandoned = 0
for c, cname in NAMES.items():
    r = json.load(open(f"report-{c}.json"))
    ab = r["abandons"]
    total_people += ab["people_answered"]
    total_abandoned += ab["abandoned"]
    print(f"  {cname}: {ab['abandoned']} of {ab['people_answered']} people abandoned "
          f"({ab['rate_pct']:.0f} %; cap {ab['cap_pct']:.0f} % over 30 days); "
          f"{r['bridged']} bridged, {r['agent_talk_secs']:.1f} s agent talk, "
          f"mean queue wait {r['average_queue_wait_ms'] / 1000:.1f} s")
print(f"  both: {total_abandoned} of {total_people} people abandoned "
      f"({100 * total_abandoned / max(total_people, 1):.0f} %)")
want = {"bridged at once": 2, "queued, then bridged": 1, "abandoned": 1}
sys.exit(0 if all(seen.get(k) == v for k, v in want.items()) else 1)
EOT

echo
echo "demo: logs: $work/serve.log, $work/sipp_errors.log, $work/agent-*/baresip.log"
echo "demo: what the agents recorded (baresip, *-dec.wav: what each heard):"
for name in alice bob; do
  for wav in "$work/agent-$name"/rec/*-dec.wav; do
    if [ -f "$wav" ]; then
      printf '  %-5s %s (%.1f s)\n' "$name" "$wav" "$(soxi -D "$wav")"
    fi
  done
done

# --- an AI voice agent ----------------------------------------------------------------------------
# A third campaign, once the pool's are done, streams its one person to a small Twilio Media
# Streams agent (scripts/demo_agent.py): the socket opens while the call rings, `start` comes
# the moment AMD hears a person, the agent's greeting plays and its mark comes back, the person
# (sipp: numbers ending in 120 press "1" 9 s after answering) presses a key, and the agent hangs
# up through the Twilio-compatible call-control endpoint with the demo's API key.
espeak-ng -w agent-greeting.wav "Hi Ada, this is the Acme assistant. Press one to confirm." \
  || die "espeak-ng failed"
sox agent-greeting.wav -r 8000 -c 1 -t ul agent-greeting.ulaw
DEMO_API_KEY="$key" "$repo/.venv/bin/python" "$repo/scripts/demo_agent.py" \
  --greeting agent-greeting.ulaw --control "$api" --max-secs 12 >ai-agent.log 2>&1 &
pids+=($!)
agent_port=""
for _ in $(seq 1 100); do
  agent_port=$(sed -n 's/^LISTENING //p' ai-agent.log)
  [ -n "$agent_port" ] && break
  sleep 0.1
done
[ -n "$agent_port" ] || die "the demo AI agent did not start; see $work/ai-agent.log"
assistant=$(post_json /v1/campaigns "$(cat <<EOT
{"name": "Demo assistant", "description": "make demo: a person streamed to an AI agent",
 "pace": 60, "max_concurrent": 1, "ai_agent_url": "ws://127.0.0.1:$agent_port/media",
 "ring_timeout_secs": 4, "ring_timeout_override": true, "max_retries": 0,
 "amd_mode": "auto", "machine_action": "hangup",
 "caller_id": "+12025550100", "sip_profile": "demo-carrier", "default_country": "US"}
EOT
)")
[ -n "$assistant" ] || die "the AI campaign was not created"
printf '12025550120,Ada Lovelace,appointment reminder\n' > assistant.csv
import_csv "$assistant" assistant.csv >/dev/null
call POST "/v1/campaigns/$assistant/start" >/dev/null
echo "demo: campaign $assistant (Demo assistant) streams its person to the AI agent on ws://127.0.0.1:$agent_port"
s3=""
for _ in $(seq 1 40); do
  sleep 1
  s3=$(progress "$assistant")
  s3=${s3%% *}
  [ "$s3" = finished ] && break
done
echo "demo: what the AI agent saw:"
sed 's/^/  /' ai-agent.log | grep -v LISTENING || true
call GET "/v1/campaigns/$assistant/attempts?limit=10" > "attempts-$assistant.json"
ai_shape=ok
python3 - "$assistant" <<'EOT' || ai_shape=off
import json, sys
doc = json.load(open(f"attempts-{sys.argv[1]}.json"))
items = doc if isinstance(doc, list) else doc.get("items", [])
a = items[0] if items else {}
print(f"demo: the AI call: answered by {a.get('answered_by')}, {a.get('duration_ms', 0) / 1000:.1f} s, "
      f"ended by {a.get('ended_by')}, keys {a.get('dtmf') or '-'}")
sys.exit(0 if a.get("answered_by") == "human" and a.get("ended_by") == "agent" else 1)
EOT
grep -q "mark 'greeting' echoed" ai-agent.log && grep -q "pressed 1" ai-agent.log || ai_shape=off

[ "$s1" = finished ] && [ "$s2" = finished ] || die "the campaigns did not finish in 120 s"
[ "$s3" = finished ] || die "the AI campaign did not finish in 40 s"
[ "$ai_shape" = ok ] || die "the AI agent did not greet (mark echoed), hear the key and hang up; see $work/ai-agent.log and $work/serve.log"
[ "$shape" = ok ] || die "the pool did not show two people bridged at once, one queued and one \
abandoned (a machine too busy for the demo's timing? see $work/serve.log)"
echo "demo: done"
# On a terminal the server keeps serving its web page until Ctrl-C (then everything stops);
# otherwise (CI, a pipe) the demo ends here and stops everything it started.
if [ -t 0 ] && [ -t 1 ]; then
  echo
  echo "demo: the web page: open $api/ and log in with login 'demo' and the API key:"
  echo "      $key"
  echo "demo: serving until Ctrl-C"
  while kill -0 "$server_pid" 2>/dev/null; do sleep 1; done
fi
