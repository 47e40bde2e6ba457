#!/usr/bin/env bash
# How long the admin API's `PUT /tenants/{name}` takes with N tenants already in the
# `[tenants] file` (issue 15), release build, against the simulator. Per N (TENANTS):
#   - a tenants file of N generated tenants (`tenant-00001`.. with the simulator's ids) and a
#     config with contoso only plus `[tenants] file`; simulator with N + PUTS + 10 tenants, so
#     every tenant put later is one the simulator knows and can get a token;
#   - PUTS PUTs of new tenants one after another, each timed (a) until its 201 (curl
#     time_total) and (b) until a GET of `/NAME/api/incidents` through the data listener
#     answers 200 (one curl process does the PUT, then the GET with --next: the sum of the two
#     time_totals; that GET includes the new tenant's first token);
#   - DELETES DELETEs of tenants just put (204, then that tenant's GET must be 404);
#   - for comparison, RELOADS SIGHUP reloads of the same config (time until the proxy logs
#     "config reloaded", by its log's own timestamps and by polling), and
#     `defender-proxy validate` of it (a process parsing and validating the config alone), and
#     an fsync'd atomic write of the tenants file as the proxy does it (python3: temp file,
#     fsync, rename, fsync of the folder), best of 3.
# Prints p50 (nearest rank) and max per N, the tenants file size and the proxy's RSS before the
# PUTs and after the DELETEs, as a Markdown table on stdout; per-request lines on stderr.
#   benches/tenants_put.sh
#   TENANTS="1000 10000" PUTS=10 DELETES=5 RELOADS=3 benches/tenants_put.sh
#   BIN=/tmp/defender-proxy benches/tenants_put.sh   (that binary, no `cargo build`)
#   PIN=0 benches/tenants_put.sh                     (no taskset)
# Needs curl, python3, taskset (with PIN=1), flock. Holds /tmp/bench.lock while measuring.
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${TENANTS:-"1000 10000"}
PUTS=${PUTS:-10}
DELETES=${DELETES:-5}
RELOADS=${RELOADS:-3}
PIN=${PIN:-1}
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet --bin defender-proxy
    BIN=${CARGO_TARGET_DIR:-target}/release/defender-proxy
fi
[ "$DELETES" -le "$PUTS" ] || { echo "DELETES ($DELETES) must be <= PUTS ($PUTS)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    CORE0=(taskset -c 0); CORE1=(taskset -c 1)   # script, curl, simulator | proxy
    taskset -cp 0 $$ >/dev/null
else
    CORE0=(); CORE1=()
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$1" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$2/status"; }
now_ns() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) / 1e6}'; }      # ns, ns -> ms
secs_ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }               # s -> ms
stats() { # values (ms) on stdin -> "p50 / max" (p50: nearest rank)
    sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "-"; exit}
        r = int((NR + 1) / 2); printf "%s / %s", v[r], v[NR]}'
}
size_of() { awk -v b="$(stat -c %s "$1")" 'BEGIN {printf "%.0f KiB", b / 1024}'; }

KEY=dpk_bench-admin-key-for-tenants-put-not-for-production
KEY_SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
export BENCH_SECRET=dev-secret-not-for-production

tenant_name() { printf 'tenant-%05d' "$1"; }
tenant_id() { printf '11111111-bbbb-4bbb-8bbb-%012d' "$1"; }

write_files() { # $1 = N, $2 = listen port, $3 = admin port, $4 = simulator port
    {
        echo "# $1 tenants, written by benches/tenants_put.sh"
        for n in $(seq 1 "$1"); do
            printf '\n[[tenant]]\nname = "tenant-%05d"\nid = "11111111-bbbb-4bbb-8bbb-%012d"\n' "$n" "$n"
        done
    } >"$WORK/tenants.toml"
    rm -f "$WORK/tenants.toml.lock"
    cat >"$WORK/proxy.toml" <<TOML
[listen]
addr = "127.0.0.1:$2"
[admin]
addr = "127.0.0.1:$3"
key_sha256 = "$KEY_SHA"
[app]
client_id = "00000000-0000-0000-0000-00000000d3f0"
client_secret = { env = "BENCH_SECRET" }
[cloud]
authority = "http://127.0.0.1:$4"
api = "http://127.0.0.1:$4"
[rate_limit]
per_minute = 4000000000
per_hour = 0
[tenants]
file = "$WORK/tenants.toml"
[[tenant]]
name = "contoso"
id = "11111111-aaaa-4aaa-8aaa-000000000001"
TOML
}

# Seconds between the "SIGHUP: reloading" line and the "config reloaded" line that follows it,
# for the last reload in the proxy's JSON log.
cat >"$WORK/reload_span.py" <<'PY'
import json, sys
from datetime import datetime
start = end = None
for line in open(sys.argv[1]):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    msg = rec.get("fields", {}).get("message", rec.get("message", ""))
    ts = rec.get("timestamp")
    if ts is None:
        continue
    if msg.startswith("SIGHUP: reloading"):
        start, end = ts, None
    elif msg == "config reloaded" and start is not None:
        end = ts
def parse(ts):
    ts = ts.rstrip("Z")
    if "." in ts:
        head, frac = ts.split(".")
        ts = head + "." + frac[:6]
    return datetime.fromisoformat(ts)
print("%.1f" % ((parse(end) - parse(start)).total_seconds() * 1000) if start and end else "-")
PY

cat >"$WORK/fsync_write.py" <<'PY'
import os, sys, time
path = sys.argv[1]; folder = os.path.dirname(path); data = open(path, "rb").read()
temp = os.path.join(folder, ".fsync-probe.tmp"); probe = os.path.join(folder, "fsync-probe.toml")
best = None
for _ in range(3):
    t0 = time.perf_counter()
    with open(temp, "wb") as f:
        f.write(data); f.flush(); os.fsync(f.fileno())
    os.rename(temp, probe)
    d = os.open(folder, os.O_RDONLY); os.fsync(d); os.close(d)
    t = (time.perf_counter() - t0) * 1000
    best = t if best is None else min(best, t)
os.remove(probe)
print("%.1f" % best)
PY

ROWS=()
run() { # $1 = N
    local n=$1 sim_port port admin sim proxy
    sim_port=$(free_port); port=$(free_port); admin=$(free_port)
    "${CORE0[@]}" "$BIN" simulate --addr "127.0.0.1:$sim_port" --extra-tenants $((n + PUTS + 10)) --no-limits \
        --log-format json 2>"$WORK/sim.log" &
    sim=$!
    until curl -s -o /dev/null "http://127.0.0.1:$sim_port/_sim"; do sleep 0.1; done
    write_files "$n" "$port" "$admin" "$sim_port"
    local file_before; file_before=$(size_of "$WORK/tenants.toml")

    # `validate` of the same config: parse + validate in a fresh process (best of 3).
    local validate_ms=""
    for _ in 1 2 3; do
        local v0 v1; v0=$(now_ns)
        "${CORE1[@]}" "$BIN" validate --config "$WORK/proxy.toml" >/dev/null 2>&1 \
            || { echo "validate failed for N=$n" >&2; "$BIN" validate --config "$WORK/proxy.toml" >&2 || true; exit 1; }
        v1=$(now_ns)
        validate_ms=$( { [ -n "$validate_ms" ] && echo "$validate_ms"; ms "$v0" "$v1"; } | sort -g | head -1)
    done

    local fsync_ms; fsync_ms=$(python3 "$WORK/fsync_write.py" "$WORK/tenants.toml")

    local s0 s1; s0=$(now_ns)
    RUST_LOG="warn,defender_proxy::reload=info,defender_proxy::tenants=info" "${CORE1[@]}" "$BIN" serve \
        --config "$WORK/proxy.toml" --log-format json 2>"$WORK/proxy.log" &
    proxy=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz"; do
        kill -0 "$proxy" 2>/dev/null || { echo "proxy exited (N=$n):" >&2; tail -20 "$WORK/proxy.log" >&2; exit 1; }
        sleep 0.05
    done
    s1=$(now_ns)
    local start_ms; start_ms=$(ms "$s0" "$s1")
    local code
    for t in contoso "$(tenant_name 1)" "$(tenant_name "$n")"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$t/api/incidents")
        [ "$code" = 200 ] || { echo "GET /$t/api/incidents: $code (N=$n)" >&2; exit 1; }
    done
    local rss_before hwm_before; rss_before=$(mib VmRSS "$proxy"); hwm_before=$(mib VmHWM "$proxy")
    echo "N=$n: ready in $start_ms ms, tenants file $file_before, RSS $rss_before MiB (peak $hwm_before)" >&2

    local put_ms=() served_ms=() get_ms=() del_ms=()
    for i in $(seq 1 "$PUTS"); do
        local k=$((n + i)) name out t0 t1 tries got
        name=$(tenant_name "$k")
        # One curl: the PUT, then (--next) the GET, so no process start between them; served =
        # PUT time + GET time (+ the wall time of any further GETs, if the first was not 200).
        out=$(curl -s -o "$WORK/put.out" -w '%{http_code} %{time_total}\n' -X PUT \
            -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
            --data "{\"id\": \"$(tenant_id "$k")\"}" "http://127.0.0.1:$admin/tenants/$name" \
            --next -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$port/$name/api/incidents")
        got=$(sed -n 2p <<<"$out"); out=$(sed -n 1p <<<"$out"); tries=1
        [ "${out%% *}" = 201 ] || { echo "PUT $name: $out $(cat "$WORK/put.out")" >&2; exit 1; }
        local extra=0
        if [ "${got%% *}" != 200 ]; then
            t0=$(now_ns)
            while :; do
                tries=$((tries + 1))
                got=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$port/$name/api/incidents")
                [ "${got%% *}" = 200 ] && break
                [ "$tries" -lt 200 ] || { echo "GET /$name/api/incidents never 200: $got" >&2; exit 1; }
            done
            t1=$(now_ns); extra=$(ms "$t0" "$t1")
        fi
        put_ms+=("$(secs_ms "${out#* }")"); get_ms+=("$(secs_ms "${got#* }")")
        if [ "$tries" = 1 ]; then
            served_ms+=("$(awk -v a="${put_ms[-1]}" -v b="${get_ms[-1]}" 'BEGIN {printf "%.1f", a + b}')")
        else
            served_ms+=("$(awk -v a="${put_ms[-1]}" -v b="$extra" 'BEGIN {printf "%.1f", a + b}')")
        fi
        echo "  PUT $name: 201 in ${put_ms[-1]} ms; served in ${served_ms[-1]} ms (first 200 GET ${get_ms[-1]} ms, GETs: $tries)" >&2
    done
    local file_after; file_after=$(size_of "$WORK/tenants.toml")
    for i in $(seq 1 "$DELETES"); do
        local name out
        name=$(tenant_name $((n + i)))
        out=$(curl -s -o "$WORK/del.out" -w '%{http_code} %{time_total}' -X DELETE \
            -H "Authorization: Bearer $KEY" "http://127.0.0.1:$admin/tenants/$name")
        [ "${out%% *}" = 204 ] || { echo "DELETE $name: $out $(cat "$WORK/del.out")" >&2; exit 1; }
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$name/api/incidents")
        [ "$code" = 404 ] || { echo "GET /$name after DELETE: $code" >&2; exit 1; }
        del_ms+=("$(secs_ms "${out#* }")")
        echo "  DELETE $name: 204 in ${del_ms[-1]} ms" >&2
    done
    local rss_after hwm_after; rss_after=$(mib VmRSS "$proxy"); hwm_after=$(mib VmHWM "$proxy")

    # SIGHUP reloads of the same config (files unchanged since the last DELETE).
    local hup_log=() hup_poll=()
    for _ in $(seq 1 "$RELOADS"); do
        local before t0 t1 waited=0
        before=$(grep -c '"config reloaded"' "$WORK/proxy.log" || true)
        t0=$(now_ns)
        kill -HUP "$proxy"
        until [ "$(grep -c '"config reloaded"' "$WORK/proxy.log" || true)" -gt "$before" ]; do
            sleep 0.002; waited=$((waited + 1))
            [ "$waited" -lt 30000 ] || { echo "no reload logged after SIGHUP" >&2; tail -5 "$WORK/proxy.log" >&2; exit 1; }
        done
        t1=$(now_ns)
        hup_poll+=("$(ms "$t0" "$t1")"); hup_log+=("$(python3 "$WORK/reload_span.py" "$WORK/proxy.log")")
        echo "  SIGHUP reload: logged after ${hup_poll[-1]} ms (in the log: ${hup_log[-1]} ms)" >&2
    done
    grep -q '"config reload failed' "$WORK/proxy.log" && { echo "a reload failed:" >&2; grep 'reload failed' "$WORK/proxy.log" >&2; exit 1; }

    ROWS+=("| $n | $(printf '%s\n' "${put_ms[@]}" | stats) | $(printf '%s\n' "${served_ms[@]}" | stats) | $(printf '%s\n' "${get_ms[@]}" | stats) | $(printf '%s\n' "${del_ms[@]}" | stats) | $(printf '%s\n' "${hup_log[@]}" | stats) | $validate_ms | $fsync_ms | $file_before → $file_after | $rss_before → $rss_after ($hwm_after) |")
    kill "$proxy" "$sim"; wait "$proxy" "$sim" 2>/dev/null || true
}

exec 9>/tmp/bench.lock
echo "waiting for /tmp/bench.lock" >&2
flock 9
for n in $TENANTS; do
    run "$n"
done
flock -u 9

echo "| tenants in file | PUT → 201 ms p50 / max | PUT → GET 200 ms p50 / max | its first GET ms p50 / max | DELETE → 204 ms p50 / max | SIGHUP reload ms p50 / max | validate ms (process) | fsync'd file write ms | tenants file | proxy RSS MiB before → after (peak) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "$PUTS PUTs, $DELETES DELETEs, $RELOADS SIGHUP reloads per row; RSS before the PUTs, after the DELETEs."
