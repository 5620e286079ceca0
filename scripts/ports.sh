# Port helpers for the demo scripts (sourced; expects a `die` function).

# Whether any socket on this machine has UDP or TCP port $1 bound (reads /proc: no extra tools).
port_in_use() {
  local hex
  hex=$(printf ':%04X ' "$1")
  # no pipe: under pipefail, `cat | grep -q` fails when grep stops reading early
  grep -qs -- "$hex" /proc/net/udp /proc/net/udp6 /proc/net/tcp /proc/net/tcp6
}

# A random even base in 20000-30999 (below the usual ephemeral range) with $1 consecutive free
# ports.
free_ports() {
  local n=$1 base i ok
  for _ in $(seq 1 200); do
    base=$(( (20000 + RANDOM % 11000) & ~1 ))
    ok=1
    for ((i = 0; i < n; i++)); do
      if port_in_use $((base + i)); then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then echo "$base"; return 0; fi
  done
  die "no $n free ports found in 20000-30999"
}
