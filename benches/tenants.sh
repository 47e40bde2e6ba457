#!/usr/bin/env bash
# Proxy throughput with 1 configured tenant vs 10,000 (requests spread over all of them), same
# load, rate limiter active (limits set out of reach). Needs wrk (apt-get install wrk).
#   benches/tenants.sh [seconds]
# Prints a Markdown table. Generator pinned to core 0, proxy and simulator to core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
TENANTS=10000
BIN=target/release/defender-proxy
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM_PORT=$(free_port)
taskset -c 1 "$BIN" simulate --addr "127.0.0.1:$SIM_PORT" --extra-tenants "$TENANTS" --no-limits 2>"$WORK/sim.log" &
until curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/_sim"; do sleep 0.1; done

write_config() { # $1 = file, $2 = number of generated tenants
    {
        echo "[listen]"; echo "addr = \"127.0.0.1:$3\""
        echo "[admin]"; echo "addr = \"127.0.0.1:$4\""
        echo "[app]"; echo 'client_id = "00000000-0000-0000-0000-00000000d3f0"'
        echo 'client_secret = { env = "BENCH_SECRET" }'
        echo "[cloud]"; echo "authority = \"http://127.0.0.1:$SIM_PORT\""; echo "api = \"http://127.0.0.1:$SIM_PORT\""
        echo "[rate_limit]"; echo "per_minute = 4000000000"; echo "per_hour = 0"
        echo "[[tenant]]"; echo 'name = "contoso"'; echo 'id = "11111111-aaaa-4aaa-8aaa-000000000001"'
        for n in $(seq 1 "$2"); do
            printf '[[tenant]]\nname = "tenant-%05d"\nid = "11111111-bbbb-4bbb-8bbb-%012d"\n' "$n" "$n"
        done
    } >"$1"
}

cat >"$WORK/spread.lua" <<LUA
math.randomseed(42)
request = function()
  return wrk.format("GET", string.format("/tenant-%05d/api/_test/headers", math.random(1, $TENANTS)))
end
LUA

run() { # $1 = label, $2 = generated tenants, $3 = wrk extra args
    local port admin pid
    port=$(free_port); admin=$(free_port)
    write_config "$WORK/proxy.toml" "$2" "$port" "$admin"
    BENCH_SECRET=dev-secret-not-for-production RUST_LOG=warn taskset -c 1 "$BIN" serve --config "$WORK/proxy.toml" 2>"$WORK/proxy.log" &
    pid=$!
    until curl -s -o /dev/null "http://127.0.0.1:$admin/readyz"; do sleep 0.1; done
    # Warm-up: every tenant's token fetched once, connections pooled.
    taskset -c 0 wrk -t1 -c32 -d5s $3 "http://127.0.0.1:$port/contoso/api/_test/headers" >/dev/null
    local out rps lat
    out=$(taskset -c 0 wrk -t1 -c32 -d"${SECS}s" $3 "http://127.0.0.1:$port/contoso/api/_test/headers")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    lat=$(awk '/Latency/ {print $2}' <<<"$out")
    local rss; rss=$(awk '/VmHWM/ {print $2" "$3}' "/proc/$pid/status")
    echo "| $1 | $rps | $lat | $rss |"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "| configuration | requests/s | mean latency | proxy peak RSS |"
echo "|---|---|---|---|"
run "1 tenant" 0 ""
run "$TENANTS tenants, requests spread over all" "$TENANTS" "-s $WORK/spread.lua"
