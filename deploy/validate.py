#!/usr/bin/env python3
"""Checks of the deployment examples in deploy/ that need no cluster, no Docker and no Grafana.

Run through deploy/validate.sh (which installs PyYAML when missing). Sections:

  kubernetes  every YAML document in deploy/kubernetes/*.yaml: basic schema, selectors, probes,
              security context, resources, grace periods, config <-> manifest cross-references
  grafana     deploy/grafana/*.json: structure, variables, every metric name in every query
  systemd     deploy/systemd/: the unit <-> proxy.toml cross-references (systemd-analyze itself
              runs from validate.sh)
  traces      deploy/traces/: the compose file <-> proxy.toml cross-references (the proxy's
              otlp_endpoint is the Jaeger service's OTLP/HTTP port, the config it mounts)
  configs     every proxy.toml (ConfigMaps, deploy/systemd/ and deploy/traces/) through
              `defender-proxy validate`, with the files they name created in a temp dir

Exit status: 0 when every check passed (skips are fine), 1 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(os.environ.get("DEFENDER_PROXY_BIN", ROOT / "target/debug/defender-proxy"))

FAILURES: list[str] = []
SKIPS: list[str] = []
CHECKS = [0]


def ok(cond: bool, what: str) -> bool:
    CHECKS[0] += 1
    if not cond:
        FAILURES.append(what)
        print(f"  FAIL {what}")
    return cond


def skip(what: str) -> None:
    SKIPS.append(what)
    print(f"  SKIPPED {what}")


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def duration_s(text: str) -> float:
    """'30s', '2m', '1m30s', '500ms' -> seconds (the forms the examples use)."""
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)", text):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(text)
    return total


# --------------------------------------------------------------------------------------------
# Kubernetes

PROXY_IMAGE = "defender-proxy"
CONFIGS: list[tuple[str, str]] = []  # (label, proxy.toml text) for the `configs` section


def get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def check_security_context(where: str, c: dict, pod_sc: dict) -> None:
    sc = c.get("securityContext") or {}
    ok(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot: true")
    ok(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem: true")
    ok(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation: false")
    ok("ALL" in (get(sc, "capabilities", "drop") or []), f"{where}: capabilities.drop [ALL]")
    ok(
        get(sc, "seccompProfile", "type", default=get(pod_sc, "seccompProfile", "type"))
        == "RuntimeDefault",
        f"{where}: seccompProfile RuntimeDefault",
    )
    ok(sc.get("privileged") in (None, False), f"{where}: not privileged")
    ok(not get(sc, "capabilities", "add"), f"{where}: adds no capabilities")


def port_number(c: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def check_proxy_container(where: str, c: dict, pod: dict, docs: list[dict], label: str) -> dict | None:
    # Probes on the admin port: /readyz for readiness, /healthz for liveness.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        hg = get(c, probe, "httpGet")
        if ok(hg is not None, f"{where}: {probe} httpGet"):
            ok(hg.get("path") == path, f"{where}: {probe} path {path} (is {hg.get('path')})")
            ok(port_number(c, hg.get("port")) == 9090, f"{where}: {probe} on the admin port 9090")
    if get(c, "startupProbe") is not None:
        ok(get(c, "startupProbe", "httpGet", "path") == "/readyz", f"{where}: startupProbe /readyz")
    sc = c.get("securityContext") or {}
    ok(sc.get("runAsUser") == 65532, f"{where}: runAsUser 65532 (the image's nonroot user)")
    res = c.get("resources") or {}
    ok(get(res, "limits", "memory") is not None, f"{where}: a memory limit")

    # The config: args name /etc/defender-proxy/proxy.toml, mounted from a ConfigMap in this file.
    args = c.get("args") or []
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    ok(cfg_path is not None, f"{where}: args name --config")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in get(pod, "volumes", default=[]) or []}
    toml_text = None
    if cfg_path:
        d, key = cfg_path.rsplit("/", 1)
        m = mounts.get(d)
        if ok(m is not None, f"{where}: {d} is mounted"):
            ok(m.get("readOnly") is True, f"{where}: {d} mounted readOnly")
            cm_name = get(volumes.get(m["name"], {}), "configMap", "name")
            cms = [x for x in docs if x.get("kind") == "ConfigMap" and get(x, "metadata", "name") == cm_name]
            if ok(len(cms) == 1, f"{where}: ConfigMap {cm_name} is in the same file"):
                toml_text = get(cms[0], "data", key)
                ok(toml_text is not None, f"{where}: ConfigMap {cm_name} has key {key}")
    if toml_text is None:
        return None
    try:
        cfg = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        ok(False, f"{where}: proxy.toml parses as TOML: {e}")
        return None
    CONFIGS.append((f"{label} ConfigMap proxy.toml", toml_text))

    listen = get(cfg, "listen", "addr", default="127.0.0.1:8080")
    admin = get(cfg, "admin", "addr", default="127.0.0.1:9090")
    ok(admin.rsplit(":", 1)[1] == "9090", f"{where}: admin.addr port 9090 (is {admin})")
    ok(not admin.startswith("127."), f"{where}: admin.addr off loopback, so the kubelet's probes reach it")
    sidecar = len(get(pod, "containers", default=[])) + len(get(pod, "initContainers", default=[]) or []) > 1
    if sidecar:
        ok(listen.startswith("127.0.0.1:"), f"{where}: a sidecar's listen.addr stays on loopback (is {listen})")
    else:
        ok(
            listen.rsplit(":", 1)[1] == "8080" and bool(cfg.get("client")),
            f"{where}: a standalone proxy listens on 8080 with [[client]] keys",
        )
        ok(
            port_number(c, "http") == 8080,
            f"{where}: containerPort http 8080",
        )

    # Files the config names: each must be under a mounted volume (the Secret), or a path the
    # workload identity webhook projects.
    secret_file = get(cfg, "app", "client_secret", "file")
    if secret_file:
        d = secret_file.rsplit("/", 1)[0]
        m = mounts.get(d)
        if ok(m is not None, f"{where}: {d} (client_secret's directory) is mounted"):
            vol = volumes.get(m["name"], {})
            ok("secret" in vol, f"{where}: {d} is a Secret volume")
            ok("subPath" not in m, f"{where}: {d} not subPath-mounted (rotation must reach the Pod)")
            items = get(vol, "secret", "items") or []
            if items:
                ok(
                    secret_file.rsplit("/", 1)[1] in [i.get("path") for i in items],
                    f"{where}: the Secret volume provides {secret_file}",
                )
            mode = get(vol, "secret", "defaultMode")
            ok(mode is not None and mode & 0o007 == 0, f"{where}: Secret files not world-readable")
    fed = get(cfg, "app", "federated_token_file")
    if fed:
        labels = get(pod, "_labels", default={})
        ok(labels.get("azure.workload.identity/use") == "true",
           f"{where}: federated_token_file needs the Pod label azure.workload.identity/use: \"true\"")
        ok(fed.startswith("/var/run/secrets/azure/tokens/"), f"{where}: federated_token_file is where the webhook projects it")
        sa = pod.get("serviceAccountName")
        sas = [x for x in docs if x.get("kind") == "ServiceAccount" and get(x, "metadata", "name") == sa]
        if ok(len(sas) == 1, f"{where}: ServiceAccount {sa} in the same file"):
            ok(
                get(sas[0], "metadata", "annotations", "azure.workload.identity/client-id")
                == get(cfg, "app", "client_id"),
                f"{where}: ServiceAccount client-id annotation equals app.client_id",
            )
    ok(bool(secret_file) != bool(fed), f"{where}: exactly one of a secret file and workload identity")

    # Grace: the Pod's grace period covers the preStop sleep plus the drain.
    grace = duration_s(get(cfg, "listen", "shutdown_grace", default="30s"))
    sleep = get(c, "lifecycle", "preStop", "sleep", "seconds", default=0)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    ok(tgps > sleep + grace, f"{where}: terminationGracePeriodSeconds {tgps} > preStop {sleep} + shutdown_grace {grace:g}")
    return cfg


def check_k8s_file(path: Path) -> None:
    print(f"kubernetes: {rel(path)}")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        ok(False, f"{rel(path)}: YAML parses: {e}")
        return
    ok(len(docs) > 0, f"{rel(path)}: has documents")
    names = set()
    for i, d in enumerate(docs):
        where = f"{rel(path)}[{i}]"
        if not ok(isinstance(d, dict), f"{where}: is a mapping"):
            continue
        kind = d.get("kind")
        ok(bool(d.get("apiVersion")), f"{where}: apiVersion")
        ok(bool(kind), f"{where}: kind")
        name = get(d, "metadata", "name")
        ok(bool(name), f"{where}: metadata.name")
        ok(bool(get(d, "metadata", "namespace")), f"{where}: metadata.namespace")
        ok((kind, name) not in names, f"{where}: {kind}/{name} unique in the file")
        names.add((kind, name))
        where = f"{rel(path)} {kind}/{name}"

        if kind == "Deployment":
            sel = get(d, "spec", "selector", "matchLabels") or {}
            tl = get(d, "spec", "template", "metadata", "labels") or {}
            ok(bool(sel), f"{where}: spec.selector.matchLabels")
            ok(all(tl.get(k) == v for k, v in sel.items()), f"{where}: selector matches the template labels")
            pod = get(d, "spec", "template", "spec") or {}
            pod = dict(pod, _labels=tl)
            pod_sc = pod.get("securityContext") or {}
            ok(pod_sc.get("runAsNonRoot") is True, f"{where}: pod securityContext runAsNonRoot")
            ok(get(pod_sc, "seccompProfile", "type") == "RuntimeDefault", f"{where}: pod seccompProfile RuntimeDefault")
            ok(pod.get("automountServiceAccountToken") is False, f"{where}: automountServiceAccountToken: false")
            containers = [("containers", c) for c in pod.get("containers") or []]
            containers += [("initContainers", c) for c in pod.get("initContainers") or []]
            ok(len(containers) > 0, f"{where}: has containers")
            proxies = 0
            for group, c in containers:
                cw = f"{where} {group}/{c.get('name')}"
                ok(bool(c.get("image")), f"{cw}: image")
                res = c.get("resources") or {}
                ok(get(res, "requests", "cpu") is not None and get(res, "requests", "memory") is not None,
                   f"{cw}: resources.requests cpu and memory")
                ok(get(res, "limits", "memory") is not None, f"{cw}: resources.limits.memory")
                check_security_context(cw, c, pod_sc)
                if PROXY_IMAGE in c.get("image", ""):
                    proxies += 1
                    if group == "initContainers":
                        ok(c.get("restartPolicy") == "Always", f"{cw}: a native sidecar has restartPolicy: Always")
                        ok(c.get("startupProbe") is not None, f"{cw}: a startupProbe, so the app starts after it")
                    cfg = check_proxy_container(cw, c, pod, docs, rel(path)) or {}
                    cfg_replicas = get(cfg, "rate_limit", "replicas")
                    if cfg_replicas is not None:
                        ok(cfg_replicas == get(d, "spec", "replicas", default=1),
                           f"{where}: [rate_limit] replicas ({cfg_replicas}) equals spec.replicas")
            ok(proxies == 1, f"{where}: exactly one defender-proxy container")

    # Services and PDBs select a Deployment's Pods; Service target ports exist.
    deployments = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Deployment"]
    for d in docs:
        if not isinstance(d, dict) or d.get("kind") not in ("Service", "PodDisruptionBudget"):
            continue
        where = f"{rel(path)} {d['kind']}/{get(d, 'metadata', 'name')}"
        sel = get(d, "spec", "selector") or {}
        if d["kind"] == "PodDisruptionBudget":
            sel = sel.get("matchLabels") or {}
            ok(get(d, "spec", "minAvailable") is not None or get(d, "spec", "maxUnavailable") is not None,
               f"{where}: minAvailable or maxUnavailable")
        ok(bool(sel), f"{where}: a selector")
        targets = [dep for dep in deployments
                   if all((get(dep, "spec", "template", "metadata", "labels") or {}).get(k) == v for k, v in sel.items())]
        if ok(len(targets) == 1, f"{where}: selects one Deployment's Pods"):
            dep = targets[0]
            if d["kind"] == "PodDisruptionBudget":
                ok(get(dep, "spec", "replicas", default=1) > get(d, "spec", "minAvailable", default=0),
                   f"{where}: minAvailable below replicas (else nodes can never drain)")
            else:
                cs = get(dep, "spec", "template", "spec", "containers") or []
                for p in get(d, "spec", "ports") or []:
                    tp = p.get("targetPort", p.get("port"))
                    ok(any(port_number(c, tp) for c in cs), f"{where}: targetPort {tp} is a container port")


def kubernetes() -> None:
    files = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    ok(len(files) >= 3, "deploy/kubernetes has the sidecar, workload identity and standalone examples")
    for f in files:
        check_k8s_file(f)


# --------------------------------------------------------------------------------------------
# Grafana

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "atan2",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are neither functions, keywords,
    label names (inside {...} or by/without/on/ignoring (...)) nor string or duration contents."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def base_name(name: str) -> str:
    for s in HISTOGRAM_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def grafana() -> tuple[set[str], list[tuple[str, str]]]:
    used: set[str] = set()
    all_exprs: list[tuple[str, str]] = []
    files = sorted((DEPLOY / "grafana").glob("*.json"))
    ok(len(files) >= 1, "deploy/grafana has a dashboard")
    src = "\n".join(p.read_text(errors="replace") for p in (ROOT / "src").rglob("*.rs"))
    for f in files:
        print(f"grafana: {rel(f)}")
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            ok(False, f"{rel(f)}: JSON parses: {e}")
            continue
        ok(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36, f"{rel(f)}: schemaVersion >= 36")
        ok(bool(dash.get("uid")) and bool(dash.get("title")), f"{rel(f)}: uid and title")
        variables = {v.get("name"): v for v in get(dash, "templating", "list", default=[])}
        ds_var = [n for n, v in variables.items() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
        ok(len(ds_var) == 1, f"{rel(f)}: one Prometheus data source variable")
        tenant = variables.get("tenant", {})
        tq = tenant.get("definition") or get(tenant, "query", "query") or tenant.get("query") or ""
        ok("label_values(defender_proxy_requests_total" in tq and tq.rstrip().endswith("tenant)"),
           f"{rel(f)}: tenant variable from label_values(defender_proxy_requests_total, tenant)")
        ds_ref = "${" + (ds_var[0] if ds_var else "datasource") + "}"
        ids = set()
        exprs: list[tuple[str, str]] = []
        panels = list(dash.get("panels") or [])
        for p in panels:
            panels.extend(p.get("panels") or [])
        for p in panels:
            where = f"{rel(f)} panel {p.get('id')} {p.get('title')!r}"
            ok(p.get("id") not in ids, f"{where}: unique id")
            ids.add(p.get("id"))
            ok(isinstance(p.get("gridPos"), dict), f"{where}: gridPos")
            if p.get("type") == "row":
                continue
            ok(get(p, "datasource", "uid") == ds_ref, f"{where}: uses the data source variable {ds_ref}")
            targets = p.get("targets") or []
            ok(len(targets) > 0, f"{where}: has queries")
            for t in targets:
                ok(get(t, "datasource", "uid", default=ds_ref) == ds_ref, f"{where} {t.get('refId')}: data source variable")
                exprs.append((f"{where} {t.get('refId')}", t.get("expr", "")))
        for a in get(dash, "annotations", "list", default=[]):
            if a.get("expr"):
                exprs.append((f"{rel(f)} annotation {a.get('name')!r}", a["expr"]))
        for v in variables.values():
            q = v.get("definition") or ""
            if q.startswith("label_values("):
                exprs.append((f"{rel(f)} variable {v.get('name')}", q[len("label_values("):].rsplit(",", 1)[0]))
        for where, expr in exprs:
            names = metric_names(expr)
            ok(bool(names), f"{where}: the query names a metric: {expr}")
            for n in sorted(names):
                used.add(n)
                ok(n.startswith("defender_proxy_"), f"{where}: metric {n} has the defender_proxy_ prefix")
        for n in sorted({base_name(n) for n in used}):
            ok(n in src, f"{rel(f)}: metric {n} is exported by src/ (a renamed metric breaks the dashboard)")
        print(f"  {len(exprs)} queries, {len({base_name(n) for n in used})} metrics: "
              + ", ".join(sorted({base_name(n).removeprefix('defender_proxy_') for n in used})))
        promtool_check(f, exprs)
        all_exprs += exprs
    return used, all_exprs


def grafana_vars(expr: str) -> str:
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("$__range", "1h").replace("${instance}", ".*").replace("$instance", ".*")
            .replace("${tenant}", ".*").replace("$tenant", ".*"))


def promtool_check(f: Path, exprs: list[tuple[str, str]]) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        skip(f"{rel(f)}: PromQL syntax (no promtool: `apt-get install prometheus` provides it)")
        return
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": grafana_vars(e)} for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as t:
        yaml.safe_dump(rules, t)
    r = subprocess.run([promtool, "check", "rules", t.name], capture_output=True, text=True)
    os.unlink(t.name)
    ok(r.returncode == 0, f"{rel(f)}: every query is valid PromQL (promtool check rules):\n{r.stdout}{r.stderr}")
    if r.returncode == 0:
        print(f"  promtool: {len(rules['groups'][0]['rules'])} queries parse")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_metrics(used: set[str], exprs: list[tuple[str, str]]) -> None:
    """Start `serve --dev`, send a request per demo tenant, and check that every metric the
    dashboard uses is in the real /metrics output."""
    if not BIN.exists():
        skip(f"dashboard metrics against a running proxy (no binary at {BIN}; cargo build)")
        return
    listen, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "DEFENDER_PROXY_"))}
    proc = subprocess.Popen(
        [str(BIN), "--log-format", "json", "serve", "--dev", "--listen", f"127.0.0.1:{listen}",
         "--admin", f"127.0.0.1:{admin}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    body = ""
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        # Graph too: serve --dev's fabrikam gets Graph's throttle headers (the upstream gauges).
        for tenant in ("contoso", "fabrikam", "nobody"):
            for path in ("/api/incidents?$top=1", "/graph/v1.0/security/incidents?$top=1"):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{listen}/{tenant}{path}", timeout=10).read()
                except OSError:
                    pass
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
            body = r.read().decode()
    except OSError as e:
        ok(False, f"serve --dev answers /metrics: {e}")
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    ok(rc == 0, f"serve --dev exits 0 on SIGTERM (exit {rc})")
    if not body:
        return
    labels: dict[str, set[str]] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            labels.setdefault(name, set()).update(re.findall(r'[{,](\w+)="', line))
    print(f"live: serve --dev exports {len(labels)} series names")
    for n in sorted(used):
        ok(n in labels, f"dashboard metric {n} is in serve --dev's /metrics")
    # Every label a query filters or groups on must exist on its metrics: a `tenant=~"$tenant"`
    # on a metric without a tenant label shows nothing as soon as one tenant is picked.
    # `instance` (and `job`) come from Prometheus' scrape, not from the proxy.
    for where, expr in exprs:
        have = set().union(*(labels.get(n, set()) for n in metric_names(expr)), {"instance", "job"})
        want = set(re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"', " ".join(re.findall(r"\{[^}]*\}", expr))))
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            want |= {g.strip() for g in group.split(",") if g.strip()}
        for label in sorted(want - have):
            ok(False, f"{where}: label {label} is not on {', '.join(sorted(metric_names(expr)))} in serve --dev's /metrics")
    bi = [line for line in body.splitlines() if line.startswith("defender_proxy_build_info{")]
    ok(bool(bi) and 'version="' in bi[0], "defender_proxy_build_info has a version label")


# --------------------------------------------------------------------------------------------
# systemd (cross-references; systemd-analyze runs in validate.sh)

def systemd() -> None:
    unit_path = DEPLOY / "systemd/defender-proxy.service"
    toml_path = DEPLOY / "systemd/proxy.toml"
    print(f"systemd: {rel(unit_path)} + {rel(toml_path)}")
    unit: dict[str, list[str]] = {}
    for line in unit_path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            unit.setdefault(k.strip(), []).append(v.strip())
    want = {
        "Type": "exec", "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "", "AmbientCapabilities": "", "SystemCallArchitectures": "native",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
        "ProtectClock": "yes", "ProtectHostname": "yes", "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "UMask": "0077",
        "Restart": "on-failure", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    for k, v in want.items():
        ok(unit.get(k, [None])[-1] == v, f"{rel(unit_path)}: {k}={v} (is {unit.get(k)})")
    ok("@system-service" in unit.get("SystemCallFilter", []), f"{rel(unit_path)}: SystemCallFilter=@system-service")
    ok(unit.get("ExecReload") == ["/bin/kill -HUP $MAINPID"], f"{rel(unit_path)}: ExecReload sends SIGHUP")
    exec_start = unit.get("ExecStart", [""])[-1].split()
    ok(exec_start[:2] == ["/usr/local/bin/defender-proxy", "serve"], f"{rel(unit_path)}: ExecStart runs serve")
    cfg_path = exec_start[exec_start.index("--config") + 1] if "--config" in exec_start else None
    ok(cfg_path == "/etc/defender-proxy/proxy.toml", f"{rel(unit_path)}: --config /etc/defender-proxy/proxy.toml")

    text = toml_path.read_text()
    cfg = tomllib.loads(text)
    CONFIGS.append((rel(toml_path), text))
    creds = dict(c.split(":", 1) for c in unit.get("LoadCredential", []))
    secret = get(cfg, "app", "client_secret", "file", default="")
    prefix = "/run/credentials/defender-proxy.service/"
    ok(secret.startswith(prefix) and secret[len(prefix):] in creds,
       f"{rel(toml_path)}: client_secret file {secret} is a LoadCredential= of the unit")
    grace = duration_s(get(cfg, "listen", "shutdown_grace", default="30s"))
    stop_text = unit.get("TimeoutStopSec", ["90s"])[-1]
    stop = duration_s(stop_text if stop_text[-1].isalpha() else stop_text + "s")
    ok(stop > grace, f"{rel(unit_path)}: TimeoutStopSec {stop:g} > shutdown_grace {grace:g}")
    audit = get(cfg, "audit", "file")
    if audit and audit != "-":
        logs = unit.get("LogsDirectory", [""])[-1]
        ok(bool(logs) and audit.startswith(f"/var/log/{logs}/"),
           f"{rel(toml_path)}: audit.file {audit} is in the unit's LogsDirectory= (the only writable place)")
    for port_key in ("listen", "admin"):
        addr = get(cfg, port_key, "addr", default="")
        ok(int(addr.rsplit(":", 1)[1]) > 1024, f"{rel(toml_path)}: {port_key}.addr port > 1024 (the unit has no capabilities)")


def traces() -> None:
    compose_path = DEPLOY / "traces/docker-compose.yaml"
    toml_path = DEPLOY / "traces/proxy.toml"
    print(f"traces: {rel(compose_path)} + {rel(toml_path)}")
    compose = yaml.safe_load(compose_path.read_text())
    services = compose.get("services", {})
    ok(set(services) == {"jaeger", "defender-proxy"}, f"{rel(compose_path)}: services jaeger and defender-proxy")
    jaeger, proxy = services.get("jaeger", {}), services.get("defender-proxy", {})
    ok(str(jaeger.get("image", "")).startswith("jaegertracing/all-in-one:") and "latest" not in jaeger["image"],
       f"{rel(compose_path)}: jaeger is a pinned jaegertracing/all-in-one image")
    ok(get(proxy, "build", "dockerfile") == "deploy/Dockerfile" and get(proxy, "build", "context") == "../..",
       f"{rel(compose_path)}: the proxy is built from deploy/Dockerfile at the repository root")
    ok("./proxy.toml:/etc/defender-proxy/proxy.toml:ro" in proxy.get("volumes", []),
       f"{rel(compose_path)}: mounts deploy/traces/proxy.toml read-only where the image reads it")
    ok(proxy.get("command", [])[-2:] == ["--config", "/etc/defender-proxy/proxy.toml"],
       f"{rel(compose_path)}: serve --config /etc/defender-proxy/proxy.toml")
    for port in proxy.get("ports", []) + jaeger.get("ports", []):
        ok(str(port).startswith("127.0.0.1:"), f"{rel(compose_path)}: port {port} published on loopback only")
    text = toml_path.read_text()
    cfg = tomllib.loads(text)
    CONFIGS.append((rel(toml_path), text))
    ok(get(cfg, "telemetry", "otlp_endpoint") == "http://jaeger:4318",
       f"{rel(toml_path)}: otlp_endpoint is the jaeger service's OTLP/HTTP port")
    for name in re.findall(r'\{\s*env\s*=\s*"([^"]+)"', text):
        ok(name in proxy.get("environment", {}), f"{rel(compose_path)}: the proxy's environment sets {name}")


# --------------------------------------------------------------------------------------------
# Each proxy.toml through `defender-proxy validate`

def secret_paths(cfg: dict) -> list[tuple[str, str]]:
    """(key, absolute path) of every file a config names, with how to fake it."""
    out = []
    for key, val in (
        ("secret", get(cfg, "app", "client_secret", "file")),
        ("secret", get(cfg, "rate_limit", "backend_password", "file")),
        ("token", get(cfg, "app", "federated_token_file")),
        ("dir", get(cfg, "audit", "file")),
    ):
        if val and val != "-":
            out.append((key, val))
    for key in ("cert", "key"):
        val = get(cfg, "app", "certificate", key)
        if val:
            out.append(("pem", val))
    return out


def configs() -> None:
    if not BIN.exists():
        skip(f"`defender-proxy validate` of the example configs (no binary at {BIN}; cargo build)")
        return
    print(f"configs: {rel(BIN) if BIN.is_relative_to(ROOT) else BIN} validate")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "DEFENDER_PROXY_"))}
    for label, text in CONFIGS:
        cfg = tomllib.loads(text)
        with tempfile.TemporaryDirectory(prefix="deploy-validate-") as tmp:
            tmp = Path(tmp)
            for kind, path in secret_paths(cfg):
                fake = tmp / path.lstrip("/")
                fake.parent.mkdir(parents=True, exist_ok=True)
                if kind == "secret":
                    fake.write_text("not-a-real-secret\n")
                elif kind == "token":
                    # A JWT-shaped service account token (header.payload.signature).
                    fake.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c29jOnNvYy10b29sIn0.c2ln\n")
                elif kind == "pem":
                    skip(f"{label}: {path} (a certificate) is not faked")
                    continue
                if fake.exists():
                    fake.chmod(0o600)
                text = text.replace(f'"{path}"', f'"{fake}"')
            for name in re.findall(r'\{\s*env\s*=\s*"([^"]+)"', text):
                env[name] = "not-a-real-secret"
            (tmp / "proxy.toml").write_text(text)
            r = subprocess.run([str(BIN), "--log-format", "text", "validate", "--config", str(tmp / "proxy.toml")],
                               capture_output=True, text=True, env=env, timeout=60)
            out = (r.stdout + r.stderr).replace(str(tmp), "<tmp>").strip()
            if ok(r.returncode == 0, f"{label}: `defender-proxy validate` exits 0 (it exited {r.returncode}):\n{out}"):
                print(f"  ok   {label}: {out.splitlines()[-1] if out else ''}")
                for line in out.splitlines():
                    if "warning" in line.lower():
                        print(f"       {line}")


def main() -> int:
    sections = sys.argv[1:] or ["kubernetes", "grafana", "systemd", "traces", "configs"]
    used: set[str] = set()
    if "kubernetes" in sections:
        kubernetes()
    if "grafana" in sections:
        used, exprs = grafana()
        live_metrics(used, exprs)
    if "systemd" in sections:
        systemd()
    if "traces" in sections:
        traces()
    if "configs" in sections:
        configs()
    print(f"deploy/validate.py: {CHECKS[0] - len(FAILURES)} passed, {len(FAILURES)} failed, {len(SKIPS)} skipped")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
