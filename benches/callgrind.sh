#!/usr/bin/env bash
# User-space instructions per request of the proxy, counted by callgrind (repeatable to ~0.1 %,
# whatever else the machine does, unlike timings on a shared 2-core VM).
#
#   benches/callgrind.sh [BIN ...]      # default: target/release/defender-proxy
#
# The simulator (a separate process, not counted) is the upstream; the proxy runs under
# callgrind, is warmed up (token fetched, connections pooled), then counts
# (counters zeroed, then dumped) N distinct GETs (nothing coalesced) sent by curl over one keep-alive connection. Prints one
# line per binary: instructions per request.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/defender-proxy)
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM_PORT=$(free_port)
"${BINS[0]}" simulate --addr "127.0.0.1:$SIM_PORT" --no-limits 2>"$WORK/sim.log" &
until curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/_sim"; do sleep 0.1; done

for BIN in "${BINS[@]}"; do
    PORT=$(free_port); ADMIN=$(free_port)
    cat >"$WORK/proxy.toml" <<TOML
[listen]
addr = "127.0.0.1:$PORT"
[admin]
addr = "127.0.0.1:$ADMIN"
[app]
client_id = "00000000-0000-0000-0000-00000000d3f0"
client_secret = { env = "BENCH_SECRET" }
[cloud]
authority = "http://127.0.0.1:$SIM_PORT"
api = "http://127.0.0.1:$SIM_PORT"
[rate_limit]
per_minute = 4000000000
per_hour = 0
[[tenant]]
name = "contoso"
id = "11111111-aaaa-4aaa-8aaa-000000000001"
TOML
    BENCH_SECRET=dev-secret-not-for-production RUST_LOG=warn \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
        "$BIN" serve --workers 1 --config "$WORK/proxy.toml" 2>"$WORK/proxy.log" &
    PID=$!
    until curl -s -o /dev/null "http://127.0.0.1:$ADMIN/readyz"; do sleep 0.2; done
    curl -s -o /dev/null "http://127.0.0.1:$PORT/contoso/api/incidents?\$top=5&warm=[1-200]"
    callgrind_control -z "$PID" >/dev/null
    curl -s -o /dev/null "http://127.0.0.1:$PORT/contoso/api/incidents?\$top=5&n=[1-$N]"
    callgrind_control -d "$PID" >/dev/null
    kill "$PID"; wait "$PID" 2>/dev/null || true
    # The dump made right after the counted requests (the one at exit counts the shutdown).
    TOTAL=$(awk '/^summary:/ {print $2}' "$WORK"/cg.*.1)
    echo "$BIN: $((TOTAL / N)) instructions per request ($N requests, $TOTAL in all)"
    rm -f "$WORK"/cg.*
done
