#!/usr/bin/env bash
# The cost of one /metrics scrape at many tenants: size of the text and the proxy's RSS before and
# after the scrape (VmRSS now, VmHWM the peak so far), release build, traffic spread over every
# tenant first so each one has series. Runs once with per-tenant histograms (the default) and
# once with `[metrics] per_tenant_histograms = false`.
#   benches/metrics.sh [tenants]          (default 5000)
#   BIN=/path/to/defender-proxy benches/metrics.sh   (measure another build, e.g. an older one;
#                                         a binary that refuses [metrics] gets only the first row)
#   SAVE=DIR benches/metrics.sh           (keep each scrape as DIR/per-tenant.txt, DIR/per-api.txt)
# Needs curl and python3. Holds /tmp/bench.lock while measuring (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${1:-5000}
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet --bin defender-proxy
    BIN=${CARGO_TARGET_DIR:-target}/release/defender-proxy
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$1" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$2/status"; }

exec 9>/tmp/bench.lock
flock 9

SIM_PORT=$(free_port)
"$BIN" simulate --addr "127.0.0.1:$SIM_PORT" --extra-tenants "$TENANTS" --no-limits 2>"$WORK/sim.log" &
until curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/_sim"; do sleep 0.1; done

write_config() { # $1 = file, $2 = listen port, $3 = admin port, $4 = extra config lines
    {
        echo "[listen]"; echo "addr = \"127.0.0.1:$2\""
        echo "[admin]"; echo "addr = \"127.0.0.1:$3\""
        echo "[app]"; echo 'client_id = "00000000-0000-0000-0000-00000000d3f0"'
        echo 'client_secret = { env = "BENCH_SECRET" }'
        echo "[cloud]"; echo "authority = \"http://127.0.0.1:$SIM_PORT\""; echo "api = \"http://127.0.0.1:$SIM_PORT\""
        echo "[rate_limit]"; echo "per_minute = 4000000000"; echo "per_hour = 0"
        printf '%b' "$4"
        for n in $(seq 1 "$TENANTS"); do
            printf '[[tenant]]\nname = "tenant-%05d"\nid = "11111111-bbbb-4bbb-8bbb-%012d"\n' "$n" "$n"
        done
    } >"$1"
}

# Two requests per tenant over one keep-alive connection: every tenant gets a token, counters,
# histograms and limiter state.
cat >"$WORK/spread.py" <<'PY'
import http.client, sys
port, tenants = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
bad = 0
for round in range(2):
    for n in range(1, tenants + 1):
        conn.request("GET", "/tenant-%05d/api/_test/headers" % n)
        r = conn.getresponse(); r.read()
        bad += r.status != 200
print(bad)
PY

# Checks the text format lightly: one TYPE per family, a family's samples together.
cat >"$WORK/check.py" <<'PY'
import re, sys
seen, current, lines = set(), None, 0
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? -?[0-9.e+Inf]+$')
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# TYPE "):
        name = line.split()[2]
        assert name not in seen, "family twice: " + name
        seen.add(name); current = name
        continue
    if line.startswith("#"):
        continue
    m = sample.match(line)
    assert m, "bad line: " + line
    base = re.sub(r'_(bucket|sum|count)$', '', m.group(1))
    assert m.group(1) == current or base == current, "sample outside its family: " + line
    lines += 1
print(lines)
PY

run() { # $1 = label, $2 = extra config, $3 = file name under $SAVE
    local port admin pid bad bytes samples
    port=$(free_port); admin=$(free_port)
    write_config "$WORK/proxy.toml" "$port" "$admin" "$2"
    BENCH_SECRET=dev-secret-not-for-production RUST_LOG=warn "$BIN" serve --config "$WORK/proxy.toml" 2>"$WORK/proxy.log" &
    pid=$!
    until curl -s -o /dev/null "http://127.0.0.1:$admin/readyz"; do
        kill -0 "$pid" 2>/dev/null || { echo "| $1 | proxy refused the config: $(tail -1 "$WORK/proxy.log") |"; return; }
        sleep 0.1
    done
    bad=$(python3 "$WORK/spread.py" "$port" "$TENANTS")
    sleep 1
    local rss0 hwm0 rss1 hwm1
    rss0=$(mib VmRSS "$pid"); hwm0=$(mib VmHWM "$pid")
    bytes=$(curl -s -o "$WORK/scrape.txt" -w '%{size_download}' "http://127.0.0.1:$admin/metrics")
    rss1=$(mib VmRSS "$pid"); hwm1=$(mib VmHWM "$pid")
    samples=$(python3 "$WORK/check.py" "$WORK/scrape.txt")
    if [ -n "${SAVE:-}" ]; then mkdir -p "$SAVE"; cp "$WORK/scrape.txt" "$SAVE/$3"; fi
    echo "| $1 | $bytes | $samples | $rss0 / $hwm0 | $rss1 / $hwm1 | $bad |"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "$TENANTS tenants, $(basename "$BIN") $("$BIN" --version 2>/dev/null || true)"
echo
echo "| histograms | scrape bytes | samples | RSS / peak before (MiB) | RSS / peak after one scrape (MiB) | non-200 |"
echo "|---|---|---|---|---|---|"
run "per tenant (default)" "" per-tenant.txt
run "per API" "[metrics]\nper_tenant_histograms = false\n" per-api.txt
