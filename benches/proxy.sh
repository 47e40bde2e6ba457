#!/usr/bin/env bash
# defender-proxy vs nginx vs HAProxy, side by side in ONE run, on loopback, against the same
# fast upstream (nginx, one worker, a fixed ~1 KiB JSON at every path, a big file at `/big`),
# over a plain-HTTP upstream and (HTTPS=1) again over an HTTPS upstream with a private CA.
#
#   benches/proxy.sh                               # 2 rounds of 10 s per target and measurement
#   ROUNDS=1 SECS=5 benches/proxy.sh               # quicker
#   SMOKE=1 benches/proxy.sh                       # < 1 minute: does every target still work?
#   BIN=/path/to/defender-proxy benches/proxy.sh   # use that binary, no cargo build
#
# Env (defaults; SMOKE=1 defaults in brackets; see benches/README.md for every column):
#   ROUNDS 2 [1], SECS 10 [1] (per target, per round, for wrk and for oha), WARMUP 2 [0] s,
#   CONNS 64 (wrk and oha connections), RATE 10000 [1000] (oha req/s, 0 skips the fixed-rate
#   part), TENANTS 1000 (a power of 10 when oha runs), MANY_CONNS 1000 [100] (0 skips the
#   burst), BURST_SECS 3 [1], STREAM 1 (0 skips streaming), STREAM_MIB 1024 [64], HTTPS 1
#   (0 skips the HTTPS-upstream table), BIN, OHA, OUT benches/results.md [$TMPDIR/...].
# Needs: wrk nginx haproxy curl taskset python3 (apt-get install wrk nginx haproxy curl);
#        optional: oha (cargo install oha --locked) for the fixed-rate latency.
# Pinning: load generators (wrk/oha/curl) and this script on core 0; upstream and every proxy
#          on core 1. Rounds alternate targets (A B C D E A B C D E ...) to cancel drift.
# Every load uses unique URLs (`?n=<counter>`, or a random `?n=` from oha), so defender-proxy's
# coalescing of identical concurrent GETs cannot make its figures look better than they are.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then # a quick "does every target still answer" run, not a measurement
    ROUNDS=${ROUNDS:-1} SECS=${SECS:-1} WARMUP=${WARMUP:-0} MANY_CONNS=${MANY_CONNS:-100}
    BURST_SECS=${BURST_SECS:-1} STREAM_MIB=${STREAM_MIB:-64} RATE=${RATE:-1000}
    OUT=${OUT:-${TMPDIR:-/tmp}/defender-proxy-bench-smoke.md} # don't overwrite real results
fi
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-10}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
RATE=${RATE:-10000}
TENANTS=${TENANTS:-1000}
MANY_CONNS=${MANY_CONNS:-1000}
BURST_SECS=${BURST_SECS:-3}
STREAM=${STREAM:-1}
STREAM_MIB=${STREAM_MIB:-1024}
HTTPS=${HTTPS:-1}
OUT=${OUT:-benches/results.md}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
TOKEN=bench-static-token
export BENCH_SECRET=dev-secret-not-for-production # the simulator's demo app secret

missing=()
for tool in wrk nginx haproxy curl taskset python3 awk; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]} (apt-get install -y wrk nginx haproxy curl util-linux python3)" >&2
    exit 1
fi
CORES=$(nproc) # before this script pins itself to core 0 (nproc follows the affinity)
((CORES >= 2)) || { echo "needs at least 2 CPU cores (generator on core 0, servers on core 1)" >&2; exit 1; }

# oha is optional: without it the fixed-rate table says "-".
FIXED_RATE=1
if ((RATE <= 0)); then
    FIXED_RATE=0
elif [[ ! -x $OHA ]]; then
    echo "note: oha not found (cargo install oha --locked, or OHA=/path/to/oha): no fixed-rate latency" >&2
    FIXED_RATE=0
fi
# oha makes the many-tenant URLs from a regex, so the tenant names tenant-00000 .. tenant-<TENANTS-1>
# must be exactly "every string of d digits": TENANTS = 10^d.
if ((FIXED_RATE)); then
    [[ $TENANTS =~ ^10{1,5}$ ]] || { echo "TENANTS must be 10, 100, 1000, 10000 or 100000 for the fixed-rate part (or RATE=0)" >&2; exit 1; }
    digits=$((${#TENANTS} - 1)) zeros=""
    for ((i = digits; i < 5; i++)); do zeros+="0"; done
    TENANT_REGEX="tenant-${zeros}[0-9]{$digits}" # e.g. TENANTS=1000: tenant-00[0-9]{3}
fi

WORK=$(mktemp -d)
PIDS=()
SAMPLER=
cleanup() {
    local p
    [[ -z $SAMPLER ]] || kill "$SAMPLER" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -n ${BIN:-} ]]; then
    [[ -x $BIN ]] || { echo "BIN=$BIN is not an executable" >&2; exit 1; }
else
    BIN=target/release/defender-proxy
    cargo build --release --quiet
fi
# The bare hyper proxy (examples/hyper_floor.rs): what hyper itself costs, without the features.
if [[ -n ${FLOOR_BIN:-} ]]; then
    [[ -x $FLOOR_BIN ]] || { echo "FLOOR_BIN=$FLOOR_BIN is not an executable" >&2; exit 1; }
else
    FLOOR_BIN=target/release/examples/hyper_floor
    cargo build --release --quiet --example hyper_floor
fi
# From here on this script (curl, awk, the RSS sampler) stays off the servers' core; its
# children inherit that unless started with taskset -c 1.
taskset -cp 0 $$ >/dev/null

CLK_TCK=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # $1 = url, $2 = name, $3 = pid, $4 = log; -k: readiness only, TLS is checked later
    local i
    for i in $(seq 1 100); do
        curl -sk -o /dev/null "$1" && return 0
        kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up:" >&2; cat "$4" >&2; exit 1; }
        sleep 0.1
    done
    echo "$2 did not answer at $1 within 10 s:" >&2; cat "$4" >&2; exit 1
}
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }        # $2 = VmRSS / VmHWM
add() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }

# ---------- targets: a name, a label, a PID to watch, URLs ----------
# URL: full-load (wrk) URL, LUA: the wrk script that makes it unique, ORX: oha's URL regex,
# CHECK: URLs the sanity check fetches, BIG: the stream URL. Names starting with "s" are the
# HTTPS-upstream set.
declare -A LABEL PID URL LUA ORX CHECK BIG IDLE
HTTP_NAMES=(direct nginx haproxy floor defender many)
TLS_NAMES=(sdirect snginx shaproxy sdefender smany)
target() { # $1 = name, $2 = label, $3 = pid, $4 = URL of the JSON; unique URLs from unique.lua
    LABEL[$1]=$2; PID[$1]=$3; URL[$1]=$4; LUA[$1]=$WORK/unique.lua
    ORX[$1]="$4\\?n=[0-9]{12}"; CHECK[$1]="$4?n=check"; IDLE[$1]=$(rss_kib "$3" VmRSS)
}
many_target() { # $1 = name, $2 = label, $3 = pid, $4 = base URL: requests spread over tenants
    LABEL[$1]=$2; PID[$1]=$3; URL[$1]="$4/tenant-00000/api/x"; LUA[$1]=$WORK/spread.lua
    ORX[$1]="$4/${TENANT_REGEX:-}/api/x\\?n=[0-9]{12}"; IDLE[$1]=$(rss_kib "$3" VmRSS)
    CHECK[$1]="$4/tenant-00000/api/x?n=check $4/tenant-$(printf %05d $((TENANTS - 1)))/api/x?n=check"
}

# wrk scripts: a per-thread counter (wrk runs -t1) makes every request's URL different; the
# upstream ignores the query. Measured before this: 267k client requests -> 6k upstream ones.
cat >"$WORK/unique.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?n=" .. n)
end
LUA
cat >"$WORK/spread.lua" <<LUA
math.randomseed(42)
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, string.format("/tenant-%05d/api/x?n=%d", math.random(0, $TENANTS - 1), n))
end
LUA

# ---------- upstream: nginx, one worker, HTTP and (HTTPS=1) HTTPS ----------
UP_PORT=$(free_port); UPS_PORT=$(free_port)
JSON=$(python3 -c '
import json
items = [{"id": "da%016x" % i, "title": "Suspicious PowerShell command line", "severity": "medium", "status": "new"} for i in range(9)]
print(json.dumps({"@odata.context": "https://api.security.microsoft.com/api/metadata#Alerts", "value": items}, separators=(",", ":")))')
truncate -s "${STREAM_MIB}M" "$WORK/big"
mkdir -p "$WORK/up" "$WORK/certs"
CA=$WORK/certs/ca.pem
if [[ $HTTPS == 1 ]]; then
    # A dev CA and a server certificate for localhost / 127.0.0.1 / ::1 (ca.pem, server.pem,
    # server-key.pem), made by the binary under test so the bench needs no openssl CLI.
    "$BIN" certs dev --out "$WORK/certs" >"$WORK/certs/log" 2>&1 || { cat "$WORK/certs/log" >&2; exit 1; }
fi
nginx_common() { # $1 = dir
    cat <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
CONF
}
temp_paths() { # $1 = dir
    for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $1/$t;"; done
}
up_locations() {
    cat <<CONF
        location / {
            default_type application/json;
            return 200 '$JSON';
        }
        location /big {
            default_type application/octet-stream;
            alias $WORK/big;
        }
        location = /_status {
            stub_status;  # total requests served: shows whether proxies coalesced requests
        }
CONF
}
{
    nginx_common "$WORK/up"
    cat <<CONF
http {
    access_log off;
$(temp_paths "$WORK/up")
    keepalive_requests 1000000;
    sendfile on;
    server {
        listen 127.0.0.1:$UP_PORT;
$(up_locations)
    }
CONF
    [[ $HTTPS == 1 ]] && cat <<CONF
    server {
        listen 127.0.0.1:$UPS_PORT ssl;
        ssl_certificate $WORK/certs/server.pem;
        ssl_certificate_key $WORK/certs/server-key.pem;
        ssl_session_cache builtin:10000;
$(up_locations)
    }
CONF
    echo "}"
} >"$WORK/up/nginx.conf"
taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" 2>"$WORK/up/stderr" &
UP_PID=$!; PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/" "upstream nginx" "$UP_PID" "$WORK/up/stderr"
[[ $HTTPS == 1 ]] && wait_http "https://127.0.0.1:$UPS_PORT/" "upstream nginx (https)" "$UP_PID" "$WORK/up/stderr"
# The upstream's totals (stub_status): "connections_accepted requests". Each read is itself one
# new connection and one request.
upstream_counts() { curl -s "http://127.0.0.1:$UP_PORT/_status" | awk 'NR == 3 {print $1, $3}'; }

target direct "direct to upstream" "$UP_PID" "http://127.0.0.1:$UP_PORT/api/x"
BIG[direct]="http://127.0.0.1:$UP_PORT/big"
if [[ $HTTPS == 1 ]]; then
    target sdirect "direct to upstream" "$UP_PID" "https://127.0.0.1:$UPS_PORT/api/x"
fi

# ---------- nginx as a proxy ----------
start_nginx_proxy() { # $1 = name, $2 = label, $3 = "http" or "https" upstream
    local dir=$WORK/$1 port pid tls="" up_port=$UP_PORT
    port=$(free_port)
    if [[ $3 == https ]]; then
        up_port=$UPS_PORT
        # Verify the upstream's certificate against the dev CA, by name, and reuse TLS sessions;
        # the keepalive pool means handshakes are rare anyway.
        tls="
            proxy_ssl_trusted_certificate $CA;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;"
    fi
    mkdir -p "$dir"
    {
        nginx_common "$dir"
        cat <<CONF
http {
    access_log off;
$(temp_paths "$dir")
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$up_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass $3://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer $TOKEN";
            proxy_buffering off;$tls
        }
    }
}
CONF
    } >"$dir/nginx.conf"
    taskset -c 1 nginx -p "$dir" -c "$dir/nginx.conf" 2>"$dir/stderr" &
    pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$2" "$pid" "$dir/stderr"
    target "$1" "$2" "$pid" "http://127.0.0.1:$port/api/x"
    BIG[$1]="http://127.0.0.1:$port/big"
}
start_nginx_proxy nginx "nginx proxy" http

# ---------- HAProxy ----------
start_haproxy() { # $1 = name, $2 = label, $3 = "http" or "https" upstream
    local dir=$WORK/$1 port pid server="server up 127.0.0.1:$UP_PORT"
    port=$(free_port)
    # HTTPS: verify against the dev CA and the name localhost (SNI too); HAProxy reuses TLS
    # sessions to servers by default.
    [[ $3 == https ]] && server="server up 127.0.0.1:$UPS_PORT ssl verify required ca-file $CA sni str(localhost) verifyhost localhost"
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
    http-reuse always
    http-request set-header Authorization "Bearer $TOKEN"
    $server
CONF
    taskset -c 1 haproxy -db -f "$dir/haproxy.cfg" >"$dir/stderr" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$2" "$pid" "$dir/stderr"
    target "$1" "$2" "$pid" "http://127.0.0.1:$port/api/x"
    BIG[$1]="http://127.0.0.1:$port/big"
}
start_haproxy haproxy "HAProxy" http

# ---------- the floor: a bare hyper + hyper-util proxy (static header, nothing else) ----------
start_floor() {
    local port pid
    port=$(free_port)
    taskset -c 1 "$FLOOR_BIN" "127.0.0.1:$port" "http://127.0.0.1:$UP_PORT" 2>"$WORK/floor.log" &
    pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "hyper floor" "$pid" "$WORK/floor.log"
    target floor "bare hyper proxy (floor)" "$pid" "http://127.0.0.1:$port/api/x"
    BIG[floor]="http://127.0.0.1:$port/big"
}
start_floor

# ---------- defender-proxy: simulator as Entra only, API = the nginx upstream ----------
SIM_PORT=$(free_port)
mkdir -p "$WORK/dp"
# The simulator's generated tenants have ids 11111111-bbbb-4bbb-8bbb-000000000001 .. <TENANTS>.
taskset -c 1 "$BIN" simulate --addr "127.0.0.1:$SIM_PORT" --extra-tenants "$TENANTS" --no-limits 2>"$WORK/dp/sim.log" &
SIM_PID=$!; PIDS+=("$SIM_PID")
wait_http "http://127.0.0.1:$SIM_PORT/_sim" "simulator" "$SIM_PID" "$WORK/dp/sim.log"
dp_config() { # $1 = port, $2 = admin port, $3 = API URL, $4 = CA file or "", $5 = extra tenants
    local i
    cat <<CONF
[listen]
addr = "127.0.0.1:$1"
[admin]
addr = "127.0.0.1:$2"
[app]
client_id = "00000000-0000-0000-0000-00000000d3f0"
client_secret = { env = "BENCH_SECRET" }
[cloud]
authority = "http://127.0.0.1:$SIM_PORT"
api = "$3"
$([[ -n $4 ]] && echo "ca = \"$4\"")
[rate_limit]
per_minute = 4000000000
per_hour = 0
[[tenant]]
name = "contoso"
id = "11111111-aaaa-4aaa-8aaa-000000000001"
CONF
    # contoso stays first, so /contoso/big works on the many-tenant proxy too. Names are
    # tenant-00000 .. tenant-<$5 - 1> (oha's regex), ids are the simulator's 1 .. $5.
    for ((i = 0; i < $5; i++)); do
        printf '[[tenant]]\nname = "tenant-%05d"\nid = "11111111-bbbb-4bbb-8bbb-%012d"\n' "$i" $((i + 1))
    done
}
start_dp() { # $1 = name, $2 = label, $3 = "http" or "https" upstream, $4 = extra tenants
    local port admin pid api="http://127.0.0.1:$UP_PORT" ca=""
    port=$(free_port); admin=$(free_port)
    # 127.0.0.1 is in the certificate's SANs; "localhost" might resolve to ::1 first.
    [[ $3 == https ]] && { api="https://127.0.0.1:$UPS_PORT"; ca=$CA; }
    dp_config "$port" "$admin" "$api" "$ca" "$4" >"$WORK/dp/$1.toml"
    "$BIN" validate --config "$WORK/dp/$1.toml" >"$WORK/dp/$1.validate" 2>&1 \
        || { echo "$2: config does not validate:" >&2; cat "$WORK/dp/$1.validate" >&2; exit 1; }
    RUST_LOG=warn taskset -c 1 "$BIN" serve --config "$WORK/dp/$1.toml" 2>"$WORK/dp/$1.log" &
    pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$admin/readyz" "$2" "$pid" "$WORK/dp/$1.log"
    if (($4)); then
        many_target "$1" "$2" "$pid" "http://127.0.0.1:$port"
    else
        target "$1" "$2" "$pid" "http://127.0.0.1:$port/contoso/api/x"
    fi
    BIG[$1]="http://127.0.0.1:$port/contoso/big"
}
start_dp defender "defender-proxy (1 tenant)" http 0
start_dp many "defender-proxy ($TENANTS tenants, spread)" http "$TENANTS"

if [[ $HTTPS == 1 ]]; then
    start_nginx_proxy snginx "nginx proxy" https
    start_haproxy shaproxy "HAProxy" https
    start_dp sdefender "defender-proxy (1 tenant)" https 0
    start_dp smany "defender-proxy ($TENANTS tenants, spread)" https "$TENANTS"
    ALL_NAMES=("${HTTP_NAMES[@]}" "${TLS_NAMES[@]}")
else
    ALL_NAMES=("${HTTP_NAMES[@]}")
fi

# Sanity: every target answers 200 with exactly the JSON, query string and all (curl verifies
# the HTTPS upstream's certificate against the dev CA for the direct HTTPS target).
for n in "${ALL_NAMES[@]}"; do
    read -ra urls <<<"${CHECK[$n]}"
    for url in "${urls[@]}"; do
        code=$(curl -s --cacert "$CA" -o "$WORK/check.json" -w '%{http_code}' "$url" || true)
        if [[ $code != 200 ]] || ! cmp -s "$WORK/check.json" <(printf '%s' "$JSON"); then
            echo "target $n ($url) answered $code with an unexpected body:" >&2
            head -c 500 "$WORK/check.json" >&2; echo >&2; exit 1
        fi
    done
done

# ---------- measurements ----------
wrk_parse() { # wrk output on stdin -> "requests seconds p50_us p99_us errors"
    awk '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; if (v ~ /m$/) return v * 6e7; return v + 0 }
    function secs(v) { sub(/,$/, "", v); if (v ~ /ms$/) return v / 1000; if (v ~ /s$/) return v + 0; if (v ~ /m$/) return v * 60; return v + 0 }
    /requests in/ { reqs = $1; dur = secs($4) }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Non-2xx/ { errs += $NF }
    /Socket errors/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
    END { print reqs + 0, dur + 0, p50 + 0, p99 + 0, errs + 0 }'
}
oha_parse() { # oha JSON on stdin -> "p50_us p99_us achieved_req/s errors" (non-2xx + failed)
    python3 -c '
import json, sys
d = json.load(sys.stdin)
pct = d.get("latencyPercentiles") or {}
codes = d.get("statusCodeDistribution") or {}
errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum((d.get("errorDistribution") or {}).values())
us = lambda s: "nan" if s is None else "%.1f" % (s * 1e6)
print(us(pct.get("p50")), us(pct.get("p99")), "%.0f" % (d["summary"]["requestsPerSec"] or 0), errors)'
}

declare -A REQS TIME TICKS P50 P99 ERRS UPREQ UPCONN Q50 Q99 QRPS QERRS
for n in "${ALL_NAMES[@]}"; do
    REQS[$n]=0; TIME[$n]=0; TICKS[$n]=0; P50[$n]=0; P99[$n]=0; ERRS[$n]=0; UPREQ[$n]=0; UPCONN[$n]=0
    Q50[$n]=0; Q99[$n]=0; QRPS[$n]=0; QERRS[$n]=0
done

full_load() { # $1 = target: one full-load wrk run, added to its totals
    local n=$1 t0 t1 a0 a1 u0 u1 out reqs secs p50 p99 errs
    read -r a0 u0 < <(upstream_counts); t0=$(cpu_ticks "${PID[$n]}")
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "${LUA[$n]}" "${URL[$n]}")
    t1=$(cpu_ticks "${PID[$n]}"); read -r a1 u1 < <(upstream_counts)
    read -r reqs secs p50 p99 errs < <(wrk_parse <<<"$out")
    REQS[$n]=$((REQS[$n] + reqs)); TICKS[$n]=$((TICKS[$n] + t1 - t0)); ERRS[$n]=$((ERRS[$n] + errs))
    UPREQ[$n]=$((UPREQ[$n] + u1 - u0 - 1)) # - 1: the second /_status read itself
    UPCONN[$n]=$((UPCONN[$n] + a1 - a0 - 1))
    TIME[$n]=$(add "${TIME[$n]}" "$secs"); P50[$n]=$(add "${P50[$n]}" "$p50"); P99[$n]=$(add "${P99[$n]}" "$p99")
    awk -v r="$reqs" -v s="$secs" -v c=$((t1 - t0)) -v k="$CLK_TCK" -v a="$p50" -v b="$p99" -v e="$errs" -v u=$((u1 - u0 - 1)) -v o=$((a1 - a0 - 1)) \
        'BEGIN {if (r > 0 && s > 0) printf "    %.0f req/s, %.1f CPU µs/req, p50 %.0f µs, p99 %.0f µs, %d errors; upstream: %d requests, %d new connections\n", r / s, c / k * 1e6 / r, a, b, e, u, o; else print "    no requests completed"}' >&2
}

fixed_rate() { # $1 = target: one oha run at RATE req/s, latency corrected for coordinated omission
    local n=$1 out p50 p99 rps errs
    # -w: wait for requests still running at the deadline instead of counting them as errors.
    out=$(taskset -c 0 "$OHA" --no-tui --worker-threads 1 -z "${SECS}s" -w -q "$RATE" -c "$CONNS" \
        --latency-correction --rand-regex-url --output-format json "${ORX[$n]}" 2>"$WORK/oha.err") \
        || { echo "oha failed against $n:" >&2; cat "$WORK/oha.err" >&2; exit 1; }
    read -r p50 p99 rps errs < <(oha_parse <<<"$out")
    Q50[$n]=$(add "${Q50[$n]}" "$p50"); Q99[$n]=$(add "${Q99[$n]}" "$p99")
    QRPS[$n]=$(add "${QRPS[$n]}" "$rps"); QERRS[$n]=$((QERRS[$n] + errs))
    echo "    $rps req/s, p50 $p50 µs, p99 $p99 µs, $errs errors" >&2
}

if ((WARMUP > 0)); then
    echo "warm-up: ${WARMUP}s per target" >&2
    for n in "${ALL_NAMES[@]}"; do
        taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "${LUA[$n]}" "${URL[$n]}" >/dev/null
    done
fi

# Each round: every target at full load, then every target at the fixed rate, then the HTTPS
# set at full load. "direct" goes first in each, so "added" latency compares neighbours.
for r in $(seq 1 "$ROUNDS"); do
    for n in "${HTTP_NAMES[@]}"; do
        echo "round $r/$ROUNDS: $n, full load (${SECS}s)" >&2
        full_load "$n"
    done
    if ((FIXED_RATE)); then
        for n in "${HTTP_NAMES[@]}"; do
            echo "round $r/$ROUNDS: $n, $RATE req/s (${SECS}s)" >&2
            fixed_rate "$n"
        done
    fi
    if [[ $HTTPS == 1 ]]; then
        for n in "${TLS_NAMES[@]}"; do
            echo "round $r/$ROUNDS: $n (HTTPS upstream), full load (${SECS}s)" >&2
            full_load "$n"
        done
    fi
done

declare -A HWM_LOAD HWM_MANY HWM_STREAM MIBS SCPU RSS_MAX RSS_AFTER SERRS
for n in "${ALL_NAMES[@]}"; do HWM_LOAD[$n]=$(rss_kib "${PID[$n]}" VmHWM); done

# Memory under MANY_CONNS concurrent connections (short full-load burst per target).
for n in "${HTTP_NAMES[@]}"; do
    SERRS[$n]=0
    if ((MANY_CONNS > 0)); then
        echo "$MANY_CONNS connections: $n" >&2
        out=$(taskset -c 0 wrk -t1 -c"$MANY_CONNS" -d"${BURST_SECS}s" -s "${LUA[$n]}" "${URL[$n]}")
        read -r _ _ _ _ errs < <(wrk_parse <<<"$out")
        SERRS[$n]=$((SERRS[$n] + errs))
        HWM_MANY[$n]=$(rss_kib "${PID[$n]}" VmHWM)
    else
        HWM_MANY[$n]=-
    fi
done

sample_rss() { # $1 = pid, $2 = file: the largest VmRSS (KiB) seen, sampled every ~50 ms until killed
    local max=0 key val
    while :; do
        while read -r key val _; do
            [[ $key == VmRSS: ]] && ((val > max)) && { max=$val; echo "$max" >"$2"; }
        done <"/proc/$1/status"
        sleep 0.05
    done
}
stream() { # $1 = target: STREAM_MIB through it with curl, the proxy's RSS sampled meanwhile
    local n=$1 t0 t1 speed code size
    echo 0 >"$WORK/rss.max"
    sample_rss "${PID[$n]}" "$WORK/rss.max" &
    SAMPLER=$!
    t0=$(cpu_ticks "${PID[$n]}")
    read -r speed code size < <(taskset -c 0 curl -s -o /dev/null -w '%{speed_download} %{http_code} %{size_download}\n' "${BIG[$n]}" || true)
    t1=$(cpu_ticks "${PID[$n]}")
    RSS_AFTER[$n]=$(rss_kib "${PID[$n]}" VmRSS)
    kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=
    RSS_MAX[$n]=$(<"$WORK/rss.max")
    if [[ $code != 200 || $size != $((STREAM_MIB * 1048576)) ]]; then
        echo "stream through $n: HTTP $code, $size bytes (expected 200, $((STREAM_MIB * 1048576)))" >&2
        SERRS[$n]=$((SERRS[$n] + 1))
    fi
    MIBS[$n]=$(awk -v s="$speed" 'BEGIN {printf "%.0f", s / 1048576}')
    SCPU[$n]=$(awk -v t=$((t1 - t0)) -v k="$CLK_TCK" 'BEGIN {printf "%.2f", t / k}')
    HWM_STREAM[$n]=$(rss_kib "${PID[$n]}" VmHWM)
}
if [[ $STREAM == 1 ]]; then
    cat "$WORK/big" >/dev/null # page cache warm, so the first target doesn't pay for it
    for n in "${HTTP_NAMES[@]}"; do
        echo "stream $STREAM_MIB MiB: $n" >&2
        stream "$n"
    done
else
    for n in "${HTTP_NAMES[@]}"; do MIBS[$n]=-; SCPU[$n]=-; HWM_STREAM[$n]=-; RSS_MAX[$n]=-; RSS_AFTER[$n]=-; done
fi

# ---------- tables ----------
declare -A RPS CPUUS L50 L99 UPC F50 F99 FRPS A50 A99
avg() { awk -v s="$1" -v r="$ROUNDS" 'BEGIN {printf "%.0f", s / r}'; }
for n in "${ALL_NAMES[@]}"; do
    RPS[$n]=$(awk -v r="${REQS[$n]}" -v t="${TIME[$n]}" 'BEGIN {printf "%.0f", (t > 0 ? r / t : 0)}')
    CPUUS[$n]=$(awk -v t="${TICKS[$n]}" -v k="$CLK_TCK" -v r="${REQS[$n]}" 'BEGIN {printf "%.1f", (r > 0 ? t / k * 1e6 / r : 0)}')
    UPC[$n]=$(awk -v u="${UPREQ[$n]}" -v r="${REQS[$n]}" 'BEGIN {printf "%.2f", (r > 0 ? u / r : 0)}')
    L50[$n]=$(avg "${P50[$n]}"); L99[$n]=$(avg "${P99[$n]}")
done
for n in "${HTTP_NAMES[@]}"; do
    if ((FIXED_RATE)); then
        F50[$n]=$(avg "${Q50[$n]}"); F99[$n]=$(avg "${Q99[$n]}"); FRPS[$n]=$(avg "${QRPS[$n]}")
    else
        F50[$n]=-; F99[$n]=-; FRPS[$n]=-; QERRS[$n]=-
    fi
done
for n in "${HTTP_NAMES[@]}"; do # added latency: this target minus direct, averaged over rounds
    if ((FIXED_RATE)); then
        A50[$n]=$(awk -v a="${F50[$n]}" -v b="${F50[direct]}" 'BEGIN {printf "%.0f", a - b}')
        A99[$n]=$(awk -v a="${F99[$n]}" -v b="${F99[direct]}" 'BEGIN {printf "%.0f", a - b}')
    else
        A50[$n]=-; A99[$n]=-
    fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 <= 0) print "-"; else printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }'; }

full_load_table() { # $1 = reference target for ratios, then the targets
    local ref=$1 n
    shift
    echo "| target | req/s | ×nginx | CPU µs/req | ×nginx | p50 µs | ×nginx | p99 µs | ×nginx | upstream req per client req | new upstream conns | errors | peak RSS MiB (after load) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in "$@"; do
        echo "| ${LABEL[$n]} | ${RPS[$n]} | $(ratio "${RPS[$n]}" "${RPS[$ref]}") | ${CPUUS[$n]} | $(ratio "${CPUUS[$n]}" "${CPUUS[$ref]}") | ${L50[$n]} | $(ratio "${L50[$n]}" "${L50[$ref]}") | ${L99[$n]} | $(ratio "${L99[$n]}" "${L99[$ref]}") | ${UPC[$n]} | ${UPCONN[$n]} | ${ERRS[$n]} | $(mib "${HWM_LOAD[$n]}") |"
    done
}

{
    echo "Machine: $CORES cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); kernel $(uname -r);"
    echo "$(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | awk 'NR == 1 {print "HAProxy " $3}'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1 " " $2}')$( ((FIXED_RATE)) && echo ", $("$OHA" --version)")."
    echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), ROUNDS=$ROUNDS SECS=$SECS CONNS=$CONNS RATE=$RATE$([[ $SMOKE == 1 ]] && echo ' (SMOKE: not a measurement)'),"
    echo "load generators on core 0, upstream + proxy on core 1; every request has its own URL (?n=...), so nothing is coalesced."
    echo "CPU µs/req is the proxy's (for \"direct\": the upstream's) utime+stime divided by requests; ratios are to nginx-as-proxy in the same run."
    echo
    echo "**Full load, plain-HTTP upstream** (wrk, $CONNS connections; latency at full load)"
    echo
    full_load_table nginx "${HTTP_NAMES[@]}"
    echo
    echo "**Fixed rate, plain-HTTP upstream** (oha -q $RATE, $CONNS connections, --latency-correction; added = target − direct, same rounds)"
    echo
    ((FIXED_RATE)) || { echo "(not measured: RATE=0, or oha not installed: cargo install oha --locked)"; echo; }
    echo "| target | achieved req/s | p50 µs | p99 µs | added p50 µs | added p99 µs | added p99 ×nginx | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for n in "${HTTP_NAMES[@]}"; do
        echo "| ${LABEL[$n]} | ${FRPS[$n]} | ${F50[$n]} | ${F99[$n]} | ${A50[$n]} | ${A99[$n]} | $(ratio "${A99[$n]}" "${A99[nginx]}") | ${QERRS[$n]} |"
    done
    echo
    echo "**Memory and streaming, plain-HTTP upstream** (RSS of the proxy process; VmHWM columns are cumulative; $STREAM_MIB MiB streamed with curl)"
    echo
    echo "| target | idle RSS MiB | peak RSS MiB (after load) | peak RSS MiB ($MANY_CONNS conns) | stream MiB/s | ×nginx | stream CPU s | max RSS MiB during stream | RSS MiB after stream | peak RSS MiB ($MANY_CONNS conns + stream) | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in "${HTTP_NAMES[@]}"; do
        echo "| ${LABEL[$n]} | $(mib "${IDLE[$n]}") | $(mib "${HWM_LOAD[$n]}") | $(mib "${HWM_MANY[$n]}") | ${MIBS[$n]} | $(ratio "${MIBS[$n]}" "${MIBS[nginx]}") | ${SCPU[$n]} | $(mib "${RSS_MAX[$n]}") | $(mib "${RSS_AFTER[$n]}") | $(mib "${HWM_STREAM[$n]}") | ${SERRS[$n]} |"
    done
    if [[ $HTTPS == 1 ]]; then
        echo
        echo "**Full load, HTTPS upstream** (same upstream nginx over TLS with a dev CA; each proxy verifies it; wrk → proxy is plain HTTP, \"direct\" is wrk over HTTPS)"
        echo
        full_load_table snginx "${TLS_NAMES[@]}"
    fi
} | tee "$OUT"

total=0
for n in "${ALL_NAMES[@]}"; do total=$((total + ERRS[$n])); done
for n in "${HTTP_NAMES[@]}"; do total=$((total + SERRS[$n] + ${QERRS[$n]/-/0})); done
((total == 0)) || echo "WARNING: $total errors (see the errors columns)" >&2
