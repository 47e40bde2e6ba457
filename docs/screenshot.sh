#!/usr/bin/env bash
# Makes docs/status-page.png: the status page of `serve --dev` (four demo tenants) after a few
# requests, with fabrikam's consent withdrawn (failing, AADSTS700016 and its consent link) and
# northwind paused by the simulated API's 429 (degraded), through the simulator's /_sim control
# endpoints. Kills what it started.
#   docs/screenshot.sh                         (builds the debug binary)
#   BIN=/path/to/defender-proxy docs/screenshot.sh
# Needs curl and chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/status-page.png}
if [ -z "${BIN:-}" ]; then
    cargo build --quiet --bin defender-proxy
    BIN=${CARGO_TARGET_DIR:-target}/debug/defender-proxy
fi
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome)}
WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN=$(free_port)
"$BIN" serve --dev --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" 2>"$WORK/dev.log" &
PID=$!
until curl -s -o /dev/null "http://127.0.0.1:$ADMIN/readyz"; do
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/dev.log"; exit 1; }
    sleep 0.1
done

# The simulator's address and the tenant ids, from what `serve --dev` prints.
SIM=$(grep -o 'Defender API on http://[0-9.:]*' "$WORK/dev.log" | head -1 | sed 's/.* on //')
id_of() { grep -o "$1 ([0-9a-f-]*" "$WORK/dev.log" | head -1 | sed 's/.*(//'; }
sim_mode() { curl -s -o /dev/null -X POST -d "$2" "$SIM/_sim/tenants/$(id_of "$1")"; }
sim_mode fabrikam '{"consent": false}'
sim_mode northwind '{"force_api_429": 1, "retry_after": "600"}'

for path in contoso/api/incidents contoso/api/alerts contoso/graph/v1.0/security/incidents \
    fabrikam/api/incidents northwind/api/incidents northwind/api/incidents \
    agency/mde/api/machines agency/api/incidents; do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/$path"
done

"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1400,700 --screenshot="$OUT" "http://127.0.0.1:$ADMIN/" 2>"$WORK/chromium.log"
echo "$OUT: $(wc -c <"$OUT") bytes"
