#!/usr/bin/env bash
# CPU and peak memory of the proxy translating one ~50 MB advanced-hunting answer from Graph's
# shape to the legacy one, against a plain pass-through of the same Graph answer (issue 13).
#
#   benches/hunting.sh                      # release build, R=3 runs per case, take 300000 (~52 MB)
#   SMOKE=1 benches/hunting.sh              # R=1, take 20000: does every case still work? (~10 s)
#   BIN=/tmp/defender-proxy benches/hunting.sh   # that binary, no `cargo build`
#   R=5 ROWS=100000 CASES="pass translated" PIN=0 CHECK=0 benches/hunting.sh
#
# One `defender-proxy simulate --no-limits` (Entra, Defender and Graph on one loopback port) and,
# per case, a fresh `defender-proxy serve` pointed at it:
#   direct      curl straight to the simulator's Graph runHuntingQuery (a token from its Entra):
#               the floor of wall time and TTFB; no proxy, so no proxy columns;
#   pass        POST /contoso/graph/v1.0/security/runHuntingQuery through the proxy: streamed
#               as any Graph JSON answer (link-rewrite scanning included);
#   translated  POST /contoso/api/advancedhunting/run through the proxy with
#               `[advanced_hunting] via = "graph"`: the proxy calls Graph and streams the answer
#               in the legacy `{"Stats","Schema","Results"}` shape.
# Body of every request: {"Query":"DeviceInfo | take ROWS"}. Client: curl -o /dev/null.
# Per run, of the proxy process only: CPU s (utime+stime delta from /proc/PID/stat / CLK_TCK, in
# 10 ms ticks; and the same in ms from the threads' /proc/PID/task/*/schedstat, ns-exact),
# baseline RSS (VmRSS just before, after resetting VmHWM with `echo 5 > /proc/PID/clear_refs`),
# peak RSS (VmHWM after the run); plus the simulator's CPU s, bytes, wall time and TTFB (curl).
# The table (stdout) gives the median of R runs for every column separately; per-run lines go to
# stderr. Nothing is written to files. Holds /tmp/bench.lock while measuring (the machine is
# shared). Needs curl, python3, taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then R=${R:-1}; ROWS=${ROWS:-20000}; else R=${R:-3}; ROWS=${ROWS:-300000}; fi
CASES=${CASES:-direct pass translated}
PIN=${PIN:-1}     # 1: simulator and curl on core 0, the proxy on core 1 (needs >= 2 cores)
CHECK=${CHECK:-1} # 1: before measuring, one full-size answer per case is saved and checked (JSON, row count, rows equal)
CLK_TCK=$(getconf CLK_TCK)
CORES=$(nproc)
((CORES >= 2)) || PIN=0

if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet --bin defender-proxy
    BIN=${CARGO_TARGET_DIR:-target}/release/defender-proxy
fi
[[ -x $BIN ]] || { echo "no binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Command prefixes that pin to core 0 / core 1 (empty with PIN=0). Arrays, not a function: a
# backgrounded function is a subshell, and $! would be its pid, not the program's (taskset execs).
CORE0=(); CORE1=()
if [[ $PIN == 1 ]]; then CORE0=(taskset -c 0); CORE1=(taskset -c 1); fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime (fields after "(comm)" have no spaces here)
sched_ns() { # CPU ns of the process's live threads (schedstat: exact, where stat counts 10 ms ticks)
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }'; }
median() { # numbers as arguments -> their median ("-" if none)
    (($# > 0)) || { echo -; return; }
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

CLIENT_ID=00000000-0000-0000-0000-00000000d3f0
SECRET=dev-secret-not-for-production
TENANT_ID=11111111-aaaa-4aaa-8aaa-000000000001 # contoso, one of the simulator's demo tenants
GRAPH_SCOPE=https://graph.microsoft.com/.default
HUNT_PATH=/v1.0/security/runHuntingQuery
body() { printf '{"Query":"DeviceInfo | take %s"}' "$1"; }

exec 9>/tmp/bench.lock
echo "waiting for /tmp/bench.lock" >&2
flock 9

SIM_PORT=$(free_port)
SIM=http://127.0.0.1:$SIM_PORT
RUST_LOG=warn "${CORE0[@]}" "$BIN" simulate --addr "127.0.0.1:$SIM_PORT" --no-limits 2>"$WORK/sim.log" &
SIM_PID=$!
PIDS+=("$SIM_PID")
until curl -s -o /dev/null "$SIM/_sim"; do
    kill -0 "$SIM_PID" 2>/dev/null || { echo "simulator exited:" >&2; cat "$WORK/sim.log" >&2; exit 1; }
    sleep 0.1
done

write_config() { # $1 = file, $2 = listen port, $3 = admin port, $4 = via (legacy | graph)
    cat >"$1" <<TOML
[listen]
addr = "127.0.0.1:$2"
[admin]
addr = "127.0.0.1:$3"
[app]
client_id = "$CLIENT_ID"
client_secret = { env = "BENCH_SECRET" }
[cloud]
authority = "$SIM"
api = "$SIM"
[rate_limit]
per_minute = 4000000000
per_hour = 0
[[api]]
name = "graph"
prefix = "/graph"
url = "$SIM"
scope = "$GRAPH_SCOPE"
[advanced_hunting]
via = "$4"
graph_api = "graph"
[[tenant]]
name = "contoso"
id = "$TENANT_ID"
TOML
}

declare -A URL VIA LABEL
URL[pass]=/contoso/graph$HUNT_PATH;           VIA[pass]=legacy # the Graph route doesn't depend on `via`
URL[translated]=/contoso/api/advancedhunting/run; VIA[translated]=graph
LABEL[direct]="direct to simulator (no proxy)"
LABEL[pass]="pass-through: /graph$HUNT_PATH"
LABEL[translated]="translated: /api/advancedhunting/run via Graph"

PROXY_PID=
PROXY_PORT=
start_proxy() { # $1 = case: a fresh proxy on core 1; returns 1 (message on stderr) if it won't run
    local c=$1 admin
    PROXY_PORT=$(free_port); admin=$(free_port)
    write_config "$WORK/$c.toml" "$PROXY_PORT" "$admin" "${VIA[$c]}"
    if ! BENCH_SECRET=$SECRET "$BIN" validate --config "$WORK/$c.toml" >"$WORK/validate.out" 2>&1; then
        echo "$c: this binary refuses the config (via = \"${VIA[$c]}\"):" >&2
        sed 's/^/    /' "$WORK/validate.out" >&2
        return 1
    fi
    BENCH_SECRET=$SECRET RUST_LOG=warn "${CORE1[@]}" "$BIN" serve --config "$WORK/$c.toml" 2>"$WORK/$c.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    until curl -s -o /dev/null "http://127.0.0.1:$admin/readyz"; do
        kill -0 "$PROXY_PID" 2>/dev/null || { echo "$c: proxy exited:" >&2; tail -5 "$WORK/$c.log" >&2; return 1; }
        sleep 0.1
    done
}
stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
}

TOKEN=
get_token() { # a Graph token for contoso from the simulator's Entra, for the direct case
    TOKEN=$(curl -s -X POST "$SIM/$TENANT_ID/oauth2/v2.0/token" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CLIENT_ID" \
        --data-urlencode "client_secret=$SECRET" --data-urlencode "scope=$GRAPH_SCOPE" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
}

request() { # $1 = case, $2 = rows, $3 = output file -> "http_code bytes wall_s ttfb_s" (curl's)
    local c=$1 url
    local -a auth=()
    if [[ $c == direct ]]; then url=$SIM$HUNT_PATH; auth=(-H "Authorization: Bearer $TOKEN")
    else url=http://127.0.0.1:$PROXY_PORT${URL[$c]}; fi
    "${CORE0[@]}" curl -s -X POST "${auth[@]}" -H 'Content-Type: application/json' --data-binary "$(body "$2")" \
        -o "$3" -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}\n' "$url" || echo "000 0 0 0"
}

api_requests_to() { # how many requests the simulator recorded for path $1
    curl -s "$SIM/_sim/requests" | python3 -c '
import json, sys
path = sys.argv[1]
print(sum(1 for r in json.load(sys.stdin)["api_requests"] if r["path_and_query"].split("?")[0] == path))' "$1"
}

# What an answer must be: JSON, the case's shape, ROWS rows; prints the rows' sha256 (rows are
# passed unchanged, so every case must print the same).
cat >"$WORK/check.py" <<'PY'
import hashlib, json, sys
case, path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "rb") as f:
    doc = json.load(f)
if case == "translated":
    assert {"Stats", "Schema", "Results"} <= set(doc) and "results" not in doc, "keys: %s" % list(doc)
    assert isinstance(doc["Stats"].get("ExecutionTime"), (int, float)), doc["Stats"]
    assert all(set(c) == {"Name", "Type"} for c in doc["Schema"]), doc["Schema"]
    results = doc["Results"]
else:
    assert "schema" in doc and "results" in doc, "keys: %s" % list(doc)
    results = doc["results"]
assert len(results) == rows, "%d rows, expected %d" % (len(results), rows)
h = hashlib.sha256()
for row in results:
    h.update(json.dumps(row, sort_keys=True).encode())
print(h.hexdigest())
PY

check_case() { # $1 = case, $2 = rows: one unmeasured request, its answer checked
    local c=$1 rows=$2 code bytes sum
    read -r code bytes _ _ < <(request "$c" "$rows" "$WORK/answer.json")
    if [[ $code != 200 ]]; then
        echo "$c: HTTP $code for take $rows:" >&2; head -c 600 "$WORK/answer.json" >&2; echo >&2
        return 1
    fi
    sum=$(python3 "$WORK/check.py" "$c" "$WORK/answer.json" "$rows") || {
        echo "$c: unexpected answer for take $rows (first bytes below)" >&2; head -c 600 "$WORK/answer.json" >&2; echo >&2
        return 1
    }
    rm -f "$WORK/answer.json"
    echo "$sum"
}

declare -A CPU CPUMS SIMCPU BASE PEAK GROWTH BYTES WALL TTFB FAIL SUMS
run_case() { # $1 = case: sanity check, optional full-size check, then R measured runs
    local c=$1 graph0 graph1 sum i t0 t1 s0 s1 base peak code bytes wall ttfb
    local n0 n1
    local -a cpu=() cpums=() simcpu=() bases=() peaks=() growth=() sizes=() walls=() ttfbs=()
    if [[ $c == direct ]]; then get_token; else start_proxy "$c" || { FAIL[$c]="refused or failed to start"; return; }; fi
    # Warm-up and sanity: token fetched, connection pooled, answer in the right shape.
    graph0=$(api_requests_to "$HUNT_PATH")
    check_case "$c" 3 >/dev/null || { FAIL[$c]="wrong answer"; [[ $c == direct ]] || stop_proxy; return; }
    graph1=$(api_requests_to "$HUNT_PATH")
    if ((graph1 != graph0 + 1)); then # translated must have gone to Graph, not to the legacy API
        echo "$c: the simulator saw $((graph1 - graph0)) Graph runHuntingQuery requests for one call (expected 1)" >&2
        FAIL[$c]="did not go through Graph"; [[ $c == direct ]] || stop_proxy; return
    fi
    if [[ $CHECK == 1 ]]; then
        echo "$c: checking one take $ROWS answer" >&2
        sum=$(check_case "$c" "$ROWS") || { FAIL[$c]="wrong answer"; [[ $c == direct ]] || stop_proxy; return; }
        SUMS[$c]=$sum
    fi
    for i in $(seq 1 "$R"); do
        if [[ $c != direct ]]; then
            echo 5 >"/proc/$PROXY_PID/clear_refs" # VmHWM := VmRSS
            base=$(status_kib "$PROXY_PID" VmRSS)
            t0=$(cpu_ticks "$PROXY_PID"); n0=$(sched_ns "$PROXY_PID")
        fi
        s0=$(cpu_ticks "$SIM_PID")
        read -r code bytes wall ttfb < <(request "$c" "$ROWS" /dev/null)
        s1=$(cpu_ticks "$SIM_PID")
        simcpu+=("$(awk -v t=$((s1 - s0)) -v k="$CLK_TCK" 'BEGIN {printf "%.2f", t / k}')")
        sizes+=("$bytes"); walls+=("$wall"); ttfbs+=("$ttfb")
        if [[ $c != direct ]]; then
            t1=$(cpu_ticks "$PROXY_PID"); n1=$(sched_ns "$PROXY_PID")
            peak=$(status_kib "$PROXY_PID" VmHWM)
            cpu+=("$(awk -v t=$((t1 - t0)) -v k="$CLK_TCK" 'BEGIN {printf "%.2f", t / k}')")
            cpums+=("$(awk -v a="$n0" -v b="$n1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')")
            bases+=("$base"); peaks+=("$peak"); growth+=($((peak - base)))
            echo "  $c run $i/$R: HTTP $code, $bytes bytes, wall ${wall}s, TTFB ${ttfb}s, proxy CPU ${cpu[-1]}s (${cpums[-1]} ms), RSS $(mib "$base") -> peak $(mib "$peak") MiB, simulator CPU ${simcpu[-1]}s" >&2
        else
            echo "  $c run $i/$R: HTTP $code, $bytes bytes, wall ${wall}s, TTFB ${ttfb}s, simulator CPU ${simcpu[-1]}s" >&2
        fi
        [[ $code == 200 ]] || { echo "$c run $i: HTTP $code" >&2; FAIL[$c]="HTTP $code"; }
    done
    CPU[$c]=$(median "${cpu[@]}"); CPUMS[$c]=$(median "${cpums[@]}"); BASE[$c]=$(median "${bases[@]}"); PEAK[$c]=$(median "${peaks[@]}")
    GROWTH[$c]=$(median "${growth[@]}"); SIMCPU[$c]=$(median "${simcpu[@]}")
    BYTES[$c]=$(median "${sizes[@]}"); WALL[$c]=$(median "${walls[@]}"); TTFB[$c]=$(median "${ttfbs[@]}")
    [[ $c == direct ]] || stop_proxy
}

for c in $CASES; do
    [[ -n ${LABEL[$c]:-} ]] || { echo "unknown case $c (direct, pass, translated)" >&2; exit 2; }
    echo "$c: ${LABEL[$c]}" >&2
    run_case "$c"
done
flock -u 9

# The rows must be the same bytes in every case that was checked.
if [[ $CHECK == 1 ]]; then
    sums=$(for c in $CASES; do if [[ -n ${SUMS[$c]:-} ]]; then echo "${SUMS[$c]}"; fi; done | sort -u | wc -l)
    ((sums <= 1)) || echo "WARNING: the cases' rows differ (sha256 of the rows: $(for c in $CASES; do echo -n "$c=${SUMS[$c]:-} "; done))" >&2
fi

secs() { awk -v s="$1" 'BEGIN { if (s == "-") print "-"; else printf "%.3f", s }'; }
echo "$(basename "$BIN") $("$BIN" --version 2>/dev/null | awk '{print $2}'), $CORES cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "take $ROWS, median of R=$R run(s)$([[ $SMOKE == 1 ]] && echo ' (SMOKE: not a measurement)'); $([[ $PIN == 1 ]] && echo 'simulator and curl on core 0, proxy on core 1' || echo 'not pinned'); a fresh proxy per case, VmHWM reset before each run"
echo
echo "| case | proxy CPU s | proxy CPU ms (schedstat) | peak RSS MiB | baseline RSS MiB | peak − baseline MiB | simulator CPU s | wall s | TTFB s | bytes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $CASES; do
    if [[ -n ${FAIL[$c]:-} && -z ${WALL[$c]:-} ]]; then
        echo "| ${LABEL[$c]} | ${FAIL[$c]} | | | | | | | | |"
        continue
    fi
    if [[ $c == direct ]]; then
        echo "| ${LABEL[$c]} | - | - | - | - | - | ${SIMCPU[$c]} | $(secs "${WALL[$c]}") | $(secs "${TTFB[$c]}") | ${BYTES[$c]} |"
    else
        echo "| ${LABEL[$c]}$([[ -n ${FAIL[$c]:-} ]] && echo " (${FAIL[$c]})") | ${CPU[$c]} | ${CPUMS[$c]} | $(mib "${PEAK[$c]}") | $(mib "${BASE[$c]}") | $(mib "${GROWTH[$c]}") | ${SIMCPU[$c]} | $(secs "${WALL[$c]}") | $(secs "${TTFB[$c]}") | ${BYTES[$c]} |"
    fi
done
failed=0
for c in $CASES; do [[ -z ${FAIL[$c]:-} ]] || failed=1; done
exit "$failed"
