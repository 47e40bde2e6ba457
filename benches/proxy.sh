#!/usr/bin/env bash
# defender-proxy vs nginx vs HAProxy, side by side in ONE run, on loopback, against the same
# fast upstream (nginx, one worker, a fixed ~1 KiB JSON at `/`, a 1 GiB file at `/big`).
#
#   benches/proxy.sh                 # 2 rounds of 10 s per target
#   ROUNDS=1 SECS=5 benches/proxy.sh # quick run
#
# Env: ROUNDS (2), SECS (10), CONNS (64 wrk connections), WARMUP (2 s per target),
#      TENANTS (1000: the many-tenant defender-proxy target, requests spread over all of them),
#      MANY_CONNS (1000: concurrent connections for the memory figure, 0 to skip),
#      STREAM (1 to run the 1 GiB streaming part, 0 to skip), OUT (benches/results.md).
# Needs: wrk nginx haproxy curl taskset python3 (apt-get install wrk nginx haproxy).
# Pinning: load generator (wrk/curl) on core 0; upstream and every proxy on core 1.
# Rounds alternate targets (A B C D A B C D ...) to cancel drift; figures are averaged.
# Prints one Markdown table and writes it to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-10}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
STREAM=${STREAM:-1}
TENANTS=${TENANTS:-1000}
MANY_CONNS=${MANY_CONNS:-1000}
OUT=${OUT:-benches/results.md}
BIN=target/release/defender-proxy
TOKEN=bench-static-token

missing=()
for tool in wrk nginx haproxy curl taskset python3 awk; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]} (apt-get install -y wrk nginx haproxy curl util-linux python3)" >&2
    exit 1
fi
(($(nproc) >= 2)) || { echo "needs at least 2 CPU cores (generator on core 0, servers on core 1)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet

CLK_TCK=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # $1 = url, $2 = name, $3 = pid, $4 = log
    local i
    for i in $(seq 1 100); do
        curl -s -o /dev/null "$1" && return 0
        kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up:" >&2; cat "$4" >&2; exit 1; }
        sleep 0.1
    done
    echo "$2 did not answer at $1 within 10 s:" >&2; cat "$4" >&2; exit 1
}
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }        # $2 = VmRSS / VmHWM

# ---------- upstream: nginx, one worker ----------
UP_PORT=$(free_port)
JSON=$(python3 -c '
import json
items = [{"id": "da%016x" % i, "title": "Suspicious PowerShell command line", "severity": "medium", "status": "new"} for i in range(9)]
print(json.dumps({"@odata.context": "https://api.security.microsoft.com/api/metadata#Alerts", "value": items}, separators=(",", ":")))')
truncate -s 1G "$WORK/big"
mkdir -p "$WORK/up" "$WORK/np" "$WORK/hp"
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
        location / {
            default_type application/json;
            return 200 '$JSON';
        }
        location /big {
            default_type application/octet-stream;
            alias $WORK/big;
        }
    }
}
CONF
} >"$WORK/up/nginx.conf"
taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" 2>"$WORK/up/stderr" &
UP_PID=$!; PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/" "upstream nginx" "$UP_PID" "$WORK/up/stderr"

# ---------- nginx as a proxy ----------
NP_PORT=$(free_port)
{
    nginx_common "$WORK/np"
    cat <<CONF
http {
    access_log off;
$(temp_paths "$WORK/np")
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NP_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer $TOKEN";
            proxy_buffering off;
        }
    }
}
CONF
} >"$WORK/np/nginx.conf"
taskset -c 1 nginx -p "$WORK/np" -c "$WORK/np/nginx.conf" 2>"$WORK/np/stderr" &
NP_PID=$!; PIDS+=("$NP_PID")
wait_http "http://127.0.0.1:$NP_PORT/" "nginx proxy" "$NP_PID" "$WORK/np/stderr"

# ---------- HAProxy ----------
HP_PORT=$(free_port)
cat >"$WORK/hp/haproxy.cfg" <<CONF
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
    bind 127.0.0.1:$HP_PORT
    default_backend be
backend be
    http-reuse always
    http-request set-header Authorization "Bearer $TOKEN"
    server up 127.0.0.1:$UP_PORT
CONF
taskset -c 1 haproxy -db -f "$WORK/hp/haproxy.cfg" >"$WORK/hp/stderr" 2>&1 &
HP_PID=$!; PIDS+=("$HP_PID")
wait_http "http://127.0.0.1:$HP_PORT/" "haproxy" "$HP_PID" "$WORK/hp/stderr"

# ---------- defender-proxy: simulator as Entra only, API = the nginx upstream ----------
SIM_PORT=$(free_port); DP_PORT=$(free_port); DP_ADMIN=$(free_port)
mkdir -p "$WORK/dp"
taskset -c 1 "$BIN" simulate --addr "127.0.0.1:$SIM_PORT" --extra-tenants "$TENANTS" --no-limits 2>"$WORK/dp/sim.log" &
SIM_PID=$!; PIDS+=("$SIM_PID")
wait_http "http://127.0.0.1:$SIM_PORT/_sim" "simulator" "$SIM_PID" "$WORK/dp/sim.log"
cat >"$WORK/dp/proxy.toml" <<CONF
[listen]
addr = "127.0.0.1:$DP_PORT"
[admin]
addr = "127.0.0.1:$DP_ADMIN"
[app]
client_id = "00000000-0000-0000-0000-00000000d3f0"
client_secret = { env = "BENCH_SECRET" }
[cloud]
authority = "http://127.0.0.1:$SIM_PORT"
api = "http://127.0.0.1:$UP_PORT"
[rate_limit]
per_minute = 4000000000
per_hour = 0
[[tenant]]
name = "contoso"
id = "11111111-aaaa-4aaa-8aaa-000000000001"
CONF
BENCH_SECRET=dev-secret-not-for-production RUST_LOG=warn \
    taskset -c 1 "$BIN" serve --config "$WORK/dp/proxy.toml" 2>"$WORK/dp/proxy.log" &
DP_PID=$!; PIDS+=("$DP_PID")
wait_http "http://127.0.0.1:$DP_ADMIN/readyz" "defender-proxy" "$DP_PID" "$WORK/dp/proxy.log"
DP_IDLE_RSS=$(rss_kib "$DP_PID" VmRSS)

# The same with TENANTS more tenants (contoso stays first, so /contoso/big works here too).
DK_PORT=$(free_port); DK_ADMIN=$(free_port)
{
    sed -e "s/127.0.0.1:$DP_PORT/127.0.0.1:$DK_PORT/" -e "s/127.0.0.1:$DP_ADMIN/127.0.0.1:$DK_ADMIN/" "$WORK/dp/proxy.toml"
    for i in $(seq 1 "$TENANTS"); do
        printf '[[tenant]]\nname = "tenant-%05d"\nid = "11111111-bbbb-4bbb-8bbb-%012d"\n' "$i" "$i"
    done
} >"$WORK/dp/proxy-many.toml"
BENCH_SECRET=dev-secret-not-for-production RUST_LOG=warn \
    taskset -c 1 "$BIN" serve --config "$WORK/dp/proxy-many.toml" 2>"$WORK/dp/proxy-many.log" &
DK_PID=$!; PIDS+=("$DK_PID")
wait_http "http://127.0.0.1:$DK_ADMIN/readyz" "defender-proxy ($TENANTS tenants)" "$DK_PID" "$WORK/dp/proxy-many.log"
DK_IDLE_RSS=$(rss_kib "$DK_PID" VmRSS)
cat >"$WORK/spread.lua" <<LUA
math.randomseed(42)
request = function()
  return wrk.format("GET", string.format("/tenant-%05d/api/x", math.random(1, $TENANTS)))
end
LUA

# ---------- targets ----------
NAMES=(direct nginx haproxy defender many)
LABELS=("direct to upstream" "nginx proxy" "HAProxy" "defender-proxy (1 tenant)" "defender-proxy ($TENANTS tenants, spread)")
declare -A URL PID BIG SCRIPT
URL[direct]="http://127.0.0.1:$UP_PORT/api/x";            PID[direct]=$UP_PID; BIG[direct]="http://127.0.0.1:$UP_PORT/big"
URL[nginx]="http://127.0.0.1:$NP_PORT/api/x";             PID[nginx]=$NP_PID;  BIG[nginx]="http://127.0.0.1:$NP_PORT/big"
URL[haproxy]="http://127.0.0.1:$HP_PORT/api/x";           PID[haproxy]=$HP_PID; BIG[haproxy]="http://127.0.0.1:$HP_PORT/big"
URL[defender]="http://127.0.0.1:$DP_PORT/contoso/api/x";  PID[defender]=$DP_PID; BIG[defender]="http://127.0.0.1:$DP_PORT/contoso/big"
URL[many]="http://127.0.0.1:$DK_PORT/tenant-$(printf %05d "$TENANTS")/api/x"; PID[many]=$DK_PID; BIG[many]="http://127.0.0.1:$DK_PORT/contoso/big"
for n in direct nginx haproxy defender; do SCRIPT[$n]=""; done
SCRIPT[many]="-s $WORK/spread.lua"

# Sanity: every target answers 200 with the JSON body.
for n in "${NAMES[@]}"; do
    code=$(curl -s -o "$WORK/check.json" -w '%{http_code}' "${URL[$n]}")
    if [[ $code != 200 ]] || ! cmp -s "$WORK/check.json" <(printf '%s' "$JSON"); then
        echo "target $n (${URL[$n]}) answered $code with an unexpected body:" >&2
        head -c 500 "$WORK/check.json" >&2; echo >&2; exit 1
    fi
done

to_us() { # wrk latency ("812.00us", "1.23ms", "1.01s") -> microseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); print v * 60000000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
        else print v }'
}

declare -A REQS TIME TICKS P50 P99 ERRS
for n in "${NAMES[@]}"; do REQS[$n]=0; TIME[$n]=0; TICKS[$n]=0; P50[$n]=0; P99[$n]=0; ERRS[$n]=0; done

echo "warm-up: ${WARMUP}s per target" >&2
for n in "${NAMES[@]}"; do
    taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" ${SCRIPT[$n]} "${URL[$n]}" >/dev/null
done

for r in $(seq 1 "$ROUNDS"); do
    for n in "${NAMES[@]}"; do
        echo "round $r/$ROUNDS: $n (${SECS}s)" >&2
        t0=$(cpu_ticks "${PID[$n]}")
        out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency ${SCRIPT[$n]} "${URL[$n]}")
        t1=$(cpu_ticks "${PID[$n]}")
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        dur=$(awk '/requests in/ {d = $4; sub(/,$/, "", d); print d}' <<<"$out")
        dur_s=$(awk -v d="$dur" 'BEGIN { if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 } else if (d ~ /m$/) { sub(/m$/, "", d); print d * 60 } else { sub(/s$/, "", d); print d + 0 } }')
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        errs=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e + 0}' <<<"$out")
        REQS[$n]=$((REQS[$n] + reqs)); TICKS[$n]=$((TICKS[$n] + t1 - t0)); ERRS[$n]=$((ERRS[$n] + errs))
        TIME[$n]=$(awk -v a="${TIME[$n]}" -v b="$dur_s" 'BEGIN {print a + b}')
        P50[$n]=$(awk -v a="${P50[$n]}" -v b="$p50" 'BEGIN {print a + b}')
        P99[$n]=$(awk -v a="${P99[$n]}" -v b="$p99" 'BEGIN {print a + b}')
    done
done

declare -A HWM_LOAD HWM_STREAM MIBS SCPU
declare -A HWM_MANY
for n in "${NAMES[@]}"; do HWM_LOAD[$n]=$(rss_kib "${PID[$n]}" VmHWM); done

# Memory under MANY_CONNS concurrent connections (short full-load burst per target).
for n in "${NAMES[@]}"; do
    if ((MANY_CONNS > 0)); then
        echo "$MANY_CONNS connections: $n" >&2
        out=$(taskset -c 0 wrk -t1 -c"$MANY_CONNS" -d3s ${SCRIPT[$n]} "${URL[$n]}")
        errs=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e + 0}' <<<"$out")
        ERRS[$n]=$((ERRS[$n] + errs))
        HWM_MANY[$n]=$(rss_kib "${PID[$n]}" VmHWM)
    else
        HWM_MANY[$n]=-
    fi
done

if [[ $STREAM == 1 ]]; then
    cat "$WORK/big" >/dev/null # page cache warm, so the first target doesn't pay for it
    for n in "${NAMES[@]}"; do
        echo "stream 1 GiB: $n" >&2
        t0=$(cpu_ticks "${PID[$n]}")
        read -r speed code size < <(taskset -c 0 curl -s -o /dev/null -w '%{speed_download} %{http_code} %{size_download}\n' "${BIG[$n]}")
        t1=$(cpu_ticks "${PID[$n]}")
        if [[ $code != 200 || $size != 1073741824 ]]; then
            echo "stream through $n: HTTP $code, $size bytes (expected 200, 1073741824)" >&2; ERRS[$n]=$((ERRS[$n] + 1))
        fi
        MIBS[$n]=$(awk -v s="$speed" 'BEGIN {printf "%.0f", s / 1048576}')
        SCPU[$n]=$(awk -v t=$((t1 - t0)) -v k="$CLK_TCK" 'BEGIN {printf "%.2f", t / k}')
        HWM_STREAM[$n]=$(rss_kib "${PID[$n]}" VmHWM)
    done
else
    for n in "${NAMES[@]}"; do MIBS[$n]=0; SCPU[$n]=-; HWM_STREAM[$n]=-; done
fi

# ---------- table ----------
declare -A RPS CPUUS L50 L99
for n in "${NAMES[@]}"; do
    RPS[$n]=$(awk -v r="${REQS[$n]}" -v t="${TIME[$n]}" 'BEGIN {printf "%.0f", r / t}')
    CPUUS[$n]=$(awk -v t="${TICKS[$n]}" -v k="$CLK_TCK" -v r="${REQS[$n]}" 'BEGIN {printf "%.1f", t / k * 1e6 / r}')
    L50[$n]=$(awk -v s="${P50[$n]}" -v r="$ROUNDS" 'BEGIN {printf "%.0f", s / r}')
    L99[$n]=$(awk -v s="${P99[$n]}" -v r="$ROUNDS" 'BEGIN {printf "%.0f", s / r}')
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
mib() { [[ $1 == - ]] && echo - || awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

{
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); kernel $(uname -r);"
    echo "$(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | awk 'NR == 1 {print "HAProxy " $3}'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1 " " $2}')."
    echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), ROUNDS=$ROUNDS SECS=$SECS CONNS=$CONNS, wrk on core 0, upstream + proxy on core 1."
    echo "CPU µs/req is the proxy's (for \"direct\": the upstream's) utime+stime from /proc/PID/stat divided by requests;"
    echo "latency is at full load (wrk --latency); ratios are to nginx-as-proxy in the same run."
    echo "defender-proxy idle RSS before load: $(mib "$DP_IDLE_RSS") MiB (1 tenant), $(mib "$DK_IDLE_RSS") MiB ($TENANTS tenants)."
    echo "Peak RSS (VmHWM) is cumulative: after the load rounds, then after a 3 s burst with $MANY_CONNS connections, then after the 1 GiB stream."
    echo
    echo "| target | req/s | ×nginx | CPU µs/req | ×nginx | p50 µs | ×nginx | p99 µs | ×nginx | errors | peak RSS MiB (after load) | peak RSS MiB ($MANY_CONNS conns) | 1 GiB stream MiB/s | ×nginx | stream CPU s | peak RSS MiB (after stream) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for i in "${!NAMES[@]}"; do
        n=${NAMES[$i]}
        echo "| ${LABELS[$i]} | ${RPS[$n]} | $(ratio "${RPS[$n]}" "${RPS[nginx]}") | ${CPUUS[$n]} | $(ratio "${CPUUS[$n]}" "${CPUUS[nginx]}") | ${L50[$n]} | $(ratio "${L50[$n]}" "${L50[nginx]}") | ${L99[$n]} | $(ratio "${L99[$n]}" "${L99[nginx]}") | ${ERRS[$n]} | $(mib "${HWM_LOAD[$n]}") | $(mib "${HWM_MANY[$n]}") | ${MIBS[$n]} | $(ratio "${MIBS[$n]}" "${MIBS[nginx]}") | ${SCPU[$n]} | $(mib "${HWM_STREAM[$n]}") |"
    done
} | tee "$OUT"
