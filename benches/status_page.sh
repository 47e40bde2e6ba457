#!/usr/bin/env bash
# The status page (`GET /` on the admin listener) at many tenants: time to the first byte and to
# the last, and the size, of the first page, a later page, a filter and one tenant's detail;
# release build, every tenant with a token and a request, 1 % of them failing (no consent) and
# 0.4 % paused (the API's 429), so the worst-first sort has work to do.
#   benches/status_page.sh [tenants]          (default 5000)
#   BIN=/path/to/defender-proxy benches/status_page.sh
# Also the proxy's CPU time per first page. Needs curl and python3. Holds /tmp/bench.lock while measuring (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${1:-5000}
RUNS=${RUNS:-7}
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet --bin defender-proxy
    BIN=${CARGO_TARGET_DIR:-target}/release/defender-proxy
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

exec 9>/tmp/bench.lock
flock 9

SIM_PORT=$(free_port)
PORT=$(free_port)
ADMIN=$(free_port)
"$BIN" simulate --addr "127.0.0.1:$SIM_PORT" --extra-tenants "$TENANTS" --no-limits 2>"$WORK/sim.log" &
until curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/_sim"; do sleep 0.1; done
{
    echo "[listen]"; echo "addr = \"127.0.0.1:$PORT\""
    echo "[admin]"; echo "addr = \"127.0.0.1:$ADMIN\""
    echo "[app]"; echo 'client_id = "00000000-0000-0000-0000-00000000d3f0"'
    echo 'client_secret = { env = "BENCH_SECRET" }'
    echo "[cloud]"; echo "authority = \"http://127.0.0.1:$SIM_PORT\""; echo "api = \"http://127.0.0.1:$SIM_PORT\""
    for n in $(seq 1 "$TENANTS"); do
        printf '[[tenant]]\nname = "tenant-%05d"\nid = "11111111-bbbb-4bbb-8bbb-%012d"\n' "$n" "$n"
    done
} >"$WORK/proxy.toml"
BENCH_SECRET=dev-secret-not-for-production RUST_LOG=warn "$BIN" serve --config "$WORK/proxy.toml" 2>"$WORK/proxy.log" &
PID=$!
until curl -s -o /dev/null "http://127.0.0.1:$ADMIN/readyz"; do
    kill -0 "$PID" 2>/dev/null || { tail -3 "$WORK/proxy.log"; exit 1; }
    sleep 0.1
done

# Every 100th tenant without consent, every 250th paused by a 429; one request per tenant.
cat >"$WORK/spread.py" <<'PY'
import http.client, json, sys
sim, port, tenants = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
control = http.client.HTTPConnection("127.0.0.1", sim)
def mode(n, body):
    control.request("POST", "/_sim/tenants/11111111-bbbb-4bbb-8bbb-%012d" % n, json.dumps(body))
    control.getresponse().read()
for n in range(100, tenants + 1, 100):
    mode(n, {"consent": False})
for n in range(250, tenants + 1, 250):
    mode(n, {"force_api_429": 1, "retry_after": "3600"})
conn = http.client.HTTPConnection("127.0.0.1", port)
for n in range(1, tenants + 1):
    conn.request("GET", "/tenant-%05d/api/incidents?$top=1" % n)
    conn.getresponse().read()
PY
python3 "$WORK/spread.py" "$SIM_PORT" "$PORT" "$TENANTS"

# Median over RUNS of curl's time to the first byte, to the last (ms), and the bytes.
measure() { # $1 = label, $2 = path
    local rows
    rows=$(for _ in $(seq "$RUNS"); do
        curl -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download}\n' \
            "http://127.0.0.1:$ADMIN$2"
    done | sort -n -k2)
    echo "$rows" | awk -v label="$1" -v path="$2" -v runs="$RUNS" \
        'NR == int((runs + 1) / 2) {printf "| %s | `%s` | %.1f | %.1f | %d |\n", label, path, $1 * 1000, $2 * 1000, $3}'
}

echo "$TENANTS tenants, $(basename "$BIN") $("$BIN" --version 2>/dev/null || true), median of $RUNS"
echo
echo "| page | path | first byte (ms) | whole page (ms) | bytes |"
echo "|---|---|---|---|---|"
measure "first page (worst first)" "/"
measure "page 10" "/?page=10"
measure "filter: failing" "/?q=failing"
measure "one tenant" "/?tenant=tenant-00100"

# The proxy's CPU time (user + system) per first page, over 20 pages: less noisy than wall time
# on a shared machine.
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
before=$(ticks)
for _ in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/"; done
after=$(ticks)
echo
echo "proxy CPU per first page: $(awk -v t=$((after - before)) -v hz="$HZ" 'BEGIN {printf "%.1f ms", t * 1000 / hz / 20}')"
echo "proxy RSS after: $(awk '$1 == "VmRSS:" {printf "%.1f MiB", $2 / 1024}' "/proc/$PID/status")"
