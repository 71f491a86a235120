#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests of callers (used by .ci/k8s-validate).

  k8s_check.py validate --repo ROOT --versions 1.31.0,1.37.0 NAME=RENDERED.yaml ...
      Every object against the Kubernetes OpenAPI schemas of each version, strictly (unknown
      fields are errors, a kind without a schema is an error), custom resources against the
      CRD schemas vendored in .ci/crds, then the rules of this project that no schema knows
      (security context and the image's user, probes, selectors, references, secrets, the
      purge job's failure policy, config keys the binaries really read, egress to the
      addresses they are configured to call, what the ServiceMonitor scrapes, docs coverage).
  k8s_check.py compare A.yaml B.yaml
      The same set of objects, equal field by field (the Python renderer against kustomize).

Exits 1 listing every problem found; prints one summary line on success.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import yaml

Obj = dict[str, Any]

POD_SPEC_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

# ConfigMap keys read by something other than callers-server's clap configuration.
NON_CLAP_KEYS = {"RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

# Variables naming an address a binary calls, and the binaries that read them (None: any). The
# pods' NetworkPolicies must admit each configured one, or the calls fail quietly (a failed push
# or trace export is logged, never fatal).
OUTBOUND_URL_VARS = {
    "CALLERS_PURGE_PUSHGATEWAY_URL": {"callers-purge"},
    "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": None,
}
DEFAULT_PORTS = {"http": 80, "https": 443}

# The job the purge worker pushes as; the server's job is the name of the Service scraped.
PUSHGATEWAY_JOB = "callers-purge"
CRD_METADATA_KEYS = {"name", "namespace", "labels", "annotations"}

SECRET_ENV_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|DATABASE_URL|_KEY$)", re.I)
CREDENTIAL_TEXT = re.compile(r"postgres(ql)?://[^\s\"']*@|BEGIN [A-Z ]*PRIVATE KEY", re.I)


def load(path: str) -> list[Obj]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def rid(o: Obj) -> str:
    m = o.get("metadata", {})
    ns = m.get("namespace")
    return f"{o.get('kind')}/{(ns + '/') if ns else ''}{m.get('name')}"


def dig(o: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(o, dict):
            return None
        o = o.get(p)
    return o


def pod_templates(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for o in objs:
        path = POD_SPEC_PATHS.get(o.get("kind", ""))
        if path:
            t = dig(o, *path)
            if isinstance(t, dict):
                yield o, t


def selector_matches(sel: Obj | None, labels: dict[str, str]) -> bool:
    if not sel:
        return True
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        op, key, values = e["operator"], e["key"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def strict_schema(schema: Any) -> Any:
    """An openAPIV3Schema as the API server applies it with strict field validation: an object
    schema that lists properties admits no others (unless it preserves unknown fields)."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def load_crds(directory: Path) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON schema, from the vendored CRDs."""
    schemas = {}
    for f in sorted(directory.glob("*.yaml")):
        for crd in load(str(f)):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = dig(v, "schema", "openAPIV3Schema")
                if v.get("served") and schema:
                    schemas[(f"{group}/{v['name']}", kind)] = strict_schema(schema)
    return schemas


def image_user(dockerfile: Path) -> tuple[int, int | None] | None:
    """The numeric uid (and gid) of the last USER of the Dockerfile's final stage."""
    if not dockerfile.exists():
        return None
    user = None
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            user = None
        elif len(words) == 2 and words[0].upper() == "USER":
            user = words[1]
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user or "")
    return (int(m.group(1)), int(m.group(2)) if m.group(2) else None) if m else None


def port_admitted(port: int, rules: list[Obj]) -> bool:
    """Whether any egress rule admits TCP to this port (by number; named ports do not apply
    to destinations outside the pod)."""
    for r in rules:
        ports = r.get("ports")
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != "TCP":
                continue
            lo, hi = p.get("port"), p.get("endPort") or p.get("port")
            if lo is None or (isinstance(lo, int) and lo <= port <= hi):
                return True
    return False


def peer_admits_namespace(rule: Obj, namespace: str | None) -> bool:
    """Whether a rule's destinations may include a Service in this namespace (unknown: yes)."""
    peers = rule.get("to")
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer or "namespaceSelector" not in peer:
            # An ipBlock may hold anything; a bare podSelector means the policy's namespace,
            # which the URL may well be (a short host name).
            return True
        if namespace is None or selector_matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return True
    return False


# --- what the binaries read (parsed from their clap definitions) ------------------------------


class ClapArg:
    def __init__(self, field: str, attrs: str, source: str):
        self.source = source
        long = re.search(r'\blong\s*=\s*"([^"]+)"', attrs)
        self.flag = "--" + (long.group(1) if long else field.replace("_", "-"))
        env = re.search(r'\benv\s*=\s*"([^"]+)"', attrs)
        self.env = env.group(1) if env else None
        # Only literal defaults are checked against the docs; computed ones are not parsed.
        self.default: str | None = None
        d = re.search(r'\bdefault_value\s*=\s*"([^"]*)"', attrs)
        if d:
            self.default = d.group(1)
        else:
            d = re.search(r"\bdefault_value_t\s*=\s*([0-9_]+)\s*(?:,|$)", attrs)
            if d:
                self.default = d.group(1).replace("_", "")


def clap_args(files: list[Path]) -> list[ClapArg]:
    """The `#[arg(long ...)]` fields of clap derive structs: flag, variable, literal default."""
    out = []
    field = re.compile(r"\s*(?:#\[[^\]]*\]\s*)*pub\s+(\w+)\s*:")
    for f in files:
        text = f.read_text()
        for m in re.finditer(r"#\[arg\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            attrs = text[m.end() : i - 1]
            fm = field.match(text, i + 1) if text[i : i + 1] == "]" else None
            if fm is None:
                raise SystemExit(f"k8s-check: {f}: cannot read the #[arg(...)] at offset {m.start()}")
            if re.search(r"\blong\b", attrs):
                out.append(ClapArg(fm.group(1), attrs, str(f)))
    return out


# --- checks ------------------------------------------------------------------------------------


class Checker:
    def __init__(self, repo: Path):
        self.repo = repo
        self.errors: list[str] = []
        server_src = sorted((repo / "crates/server/src").glob("*.rs"))
        purge_src = sorted((repo / "crates/purge/src").rglob("*.rs"))
        self.server_args = clap_args(server_src)
        self.purge_args = clap_args(purge_src)
        self.server_env = {a.env for a in self.server_args if a.env}
        self.purge_env = {a.env for a in self.purge_args if a.env}
        secrets_doc = repo / "deploy/k8s/secrets.example.md"
        self.secrets_doc = secrets_doc.read_text() if secrets_doc.exists() else ""
        self.crds = load_crds(repo / ".ci/crds")
        self.image_user = image_user(repo / "deploy/Dockerfile")

    def err(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    # schema
    def schema(self, name: str, objs: list[Obj], versions: list[str]) -> None:
        import kubernetes_validate as kv

        for o in objs:
            if (o.get("apiVersion"), o.get("kind")) in self.crds:
                for problem in self.crd_problems(o):
                    self.err(f"{name} {rid(o)}", problem)
                continue
            for v in versions:
                try:
                    kv.validate(o, v, strict=True)
                except kv.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    self.err(f"{name} {rid(o)}", f"Kubernetes {v} schema: {path}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    self.err(f"{name} {rid(o)}", e.message)
                except Exception as e:  # VersionNotSupportedError, unreadable schema
                    self.err(f"{name} {rid(o)}", f"cannot validate against {v}: {getattr(e, 'message', e)}")

    def crd_problems(self, o: Obj) -> list[str]:
        """Custom resources against their vendored CRD schema, as strictly as built-in kinds."""
        import jsonschema

        schema = self.crds[(o["apiVersion"], o["kind"])]
        validator = jsonschema.Draft7Validator(schema)
        problems = [f"CRD schema ({o['apiVersion']}): {'.'.join(str(p) for p in e.path) or '.'}: {e.message}"
                    for e in sorted(validator.iter_errors(o), key=lambda e: list(map(str, e.path)))]
        meta = o.get("metadata") or {}
        for k in sorted(set(meta) - CRD_METADATA_KEYS):
            problems.append(f"metadata.{k} is not a field a manifest sets")
        for k in ("labels", "annotations"):
            if not all(isinstance(v, str) for v in (meta.get(k) or {}).values()):
                problems.append(f"metadata.{k} values must be strings")
        return problems

    def crd_self_test(self) -> None:
        """A field the CRD does not have must fail, so a schema loaded without its strictness
        (or not at all) cannot pass everything unnoticed."""
        for (api, kind) in self.crds:
            probe = {"apiVersion": api, "kind": kind, "metadata": {"name": "probe"}, "spec": {"notAField": True}}
            if not any("notAField" in p for p in self.crd_problems(probe)):
                self.err(".ci/crds", f"the {kind} schema admits an unknown field: strict validation is broken")

    def rules(self, name: str, objs: list[Obj], overlay: bool, prod: bool) -> None:
        by_kind: dict[str, list[Obj]] = {}
        for o in objs:
            by_kind.setdefault(o["kind"], []).append(o)
        configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in by_kind.get("ConfigMap", [])}
        text = yaml.safe_dump_all(objs)

        # no secret values
        for o in by_kind.get("Secret", []):
            self.err(f"{name} {rid(o)}", "a Secret is committed; reference it and document it in secrets.example.md")
        if CREDENTIAL_TEXT.search(text):
            self.err(name, "the manifests contain a credential (URL with user info or a private key)")
        for cm, data in configmaps.items():
            for k in data:
                if SECRET_ENV_NAME.search(k):
                    self.err(f"{name} ConfigMap/{cm}", f"{k} looks secret; it belongs in a Secret")

        for o in objs:
            if overlay and not dig(o, "metadata", "namespace"):
                self.err(f"{name} {rid(o)}", "no namespace (the overlay must set one)")

        templates = list(pod_templates(objs))
        used_keys: set[str] = set()
        for owner, t in templates:
            self.pod(name, owner, t, configmaps, used_keys, overlay, prod)

        for key in sorted({k for data in configmaps.values() for k in data}):
            if key in NON_CLAP_KEYS or key in self.server_env | self.purge_env or key in used_keys:
                continue
            self.err(name, f"ConfigMap key {key} is read by nothing: no variable of callers-server or "
                           f"callers-purge (crates/*/src) and not referenced as $({key}) by a container")

        deployments = {o["metadata"]["name"]: o for o in by_kind.get("Deployment", [])}
        for d in deployments.values():
            self.deployment(name, d, configmaps)
        self.services(name, by_kind.get("Service", []), templates)
        for p in by_kind.get("PodDisruptionBudget", []):
            sel = dig(p, "spec", "selector")
            hits = [o for o, t in templates if selector_matches(sel, dig(t, "metadata", "labels") or {})]
            if not hits:
                self.err(f"{name} {rid(p)}", "selector matches no pod template")
            for o in hits:
                replicas = dig(o, "spec", "replicas")
                mina = dig(p, "spec", "minAvailable")
                if isinstance(mina, int) and isinstance(replicas, int) and mina >= replicas:
                    self.err(f"{name} {rid(p)}", f"minAvailable {mina} >= {rid(o)} replicas {replicas}: drains would block")
        for h in by_kind.get("HorizontalPodAutoscaler", []):
            ref = dig(h, "spec", "scaleTargetRef") or {}
            target = deployments.get(ref.get("name")) if ref.get("kind") == "Deployment" else None
            if target is None:
                self.err(f"{name} {rid(h)}", f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not in the render")
                continue
            lo, hi = dig(h, "spec", "minReplicas") or 1, dig(h, "spec", "maxReplicas")
            if lo > hi:
                self.err(f"{name} {rid(h)}", f"minReplicas {lo} > maxReplicas {hi}")
            if dig(target, "spec", "replicas") != lo:
                self.err(f"{name} {rid(h)}", f"{rid(target)} replicas should equal minReplicas {lo}")
        for n in by_kind.get("NetworkPolicy", []):
            sel = dig(n, "spec", "podSelector")
            if not any(selector_matches(sel, dig(t, "metadata", "labels") or {}) for _, t in templates):
                self.err(f"{name} {rid(n)}", "podSelector matches no pod template")
        for o, t in templates:
            labels = dig(t, "metadata", "labels") or {}
            if not any(selector_matches(dig(n, "spec", "podSelector"), labels) for n in by_kind.get("NetworkPolicy", [])):
                self.err(f"{name} {rid(o)}", "its pods are not covered by any NetworkPolicy")
        for c in by_kind.get("CronJob", []):
            self.cronjob(name, c)
        for j in by_kind.get("Job", []):
            self.job(name, j, dig(j, "spec") or {})
        for owner, t in templates:
            self.egress(name, owner, t, configmaps, by_kind.get("NetworkPolicy", []))
        self.monitoring(name, by_kind)

    def pod(self, name: str, owner: Obj, t: Obj, configmaps: dict[str, dict], used_keys: set[str], overlay: bool, prod: bool) -> None:
        where = f"{name} {rid(owner)}"
        spec = t.get("spec") or {}
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            self.err(where, "pod securityContext.runAsNonRoot must be true")
        if dig(psc, "seccompProfile", "type") != "RuntimeDefault":
            self.err(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")
        # runAsNonRoot can only be enforced for a numeric user; the pods name the image's own,
        # so files the image owns stay readable and the two cannot drift apart.
        if self.image_user is None:
            self.err(where, "deploy/Dockerfile's final stage has no numeric USER uid[:gid]")
        else:
            uid, gid = self.image_user
            if psc.get("runAsUser") != uid:
                self.err(where, f"pod securityContext.runAsUser {psc.get('runAsUser')} is not the image's USER {uid}")
            if gid is not None and psc.get("runAsGroup") != gid:
                self.err(where, f"pod securityContext.runAsGroup {psc.get('runAsGroup')} is not the image's group {gid}")
        if spec.get("automountServiceAccountToken") is not False:
            self.err(where, "automountServiceAccountToken must be false")
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cw = f"{where} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                self.err(cw, "allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.err(cw, "readOnlyRootFilesystem must be true")
            if "ALL" not in (dig(sc, "capabilities", "drop") or []):
                self.err(cw, "capabilities.drop must contain ALL")
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if not dig(c, "resources", kind, res):
                        self.err(cw, f"resources.{kind}.{res} is not set")
            image = str(c.get("image", ""))
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else None
            if overlay and "@sha256:" not in image:
                if tag is None or tag == "latest":
                    self.err(cw, f"image {image} needs a tag other than latest (or a digest)")
                elif prod and not re.fullmatch(r"v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", tag):
                    self.err(cw, f"production image {image} must be pinned to a release tag or digest")
            # environment: references and secrets
            names: set[str] = set()
            for ef in c.get("envFrom") or []:
                ref = dig(ef, "configMapRef", "name")
                if ref is not None:
                    if ref not in configmaps:
                        self.err(cw, f"envFrom ConfigMap {ref} is not in the render")
                    names |= set(configmaps.get(ref, {}))
                sref = dig(ef, "secretRef", "name")
                if sref is not None:
                    self.secret_ref(cw, sref, None)
            for e in c.get("env") or []:
                names.add(e["name"])
                if "value" in e and SECRET_ENV_NAME.search(e["name"]) and not e["name"].endswith("_FILE"):
                    self.err(cw, f"{e['name']} has a literal value; take it from a Secret")
                cmk = dig(e, "valueFrom", "configMapKeyRef")
                if cmk:
                    if cmk.get("key") not in configmaps.get(cmk.get("name"), {}):
                        self.err(cw, f"{e['name']}: ConfigMap {cmk.get('name')} has no key {cmk.get('key')}")
                    used_keys.add(cmk.get("key"))
                sk = dig(e, "valueFrom", "secretKeyRef")
                if sk:
                    self.secret_ref(cw, sk.get("name"), sk.get("key"))
            for arg in (c.get("command") or []) + (c.get("args") or []):
                for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                    used_keys.add(var)
                    if var not in names:
                        self.err(cw, f"$({var}) in command/args is not an environment variable of the container")
            # Variables set one by one must be read by the binary the container runs: clap
            # ignores unknown ones, so a typo would silently leave the default in force.
            binary = (c.get("command") or ["callers-server"])[0]
            known = {"callers-server": self.server_env, "callers-purge": self.purge_env}.get(binary)
            if known is None:
                self.err(cw, f"runs {binary}, which is neither callers-server nor callers-purge")
            else:
                for e in c.get("env") or []:
                    n = e["name"]
                    if n.startswith("CALLERS_") and n not in known:
                        self.err(cw, f"{n} is not a variable of {binary} (crates/*/src): it would be ignored")
        for v in spec.get("volumes") or []:
            if "secret" in v:
                items = v["secret"].get("items") or [{"key": None}]
                for it in items:
                    self.secret_ref(f"{where} volume {v['name']}", v["secret"].get("secretName"), it["key"])
        if spec.get("restartPolicy") not in (None, "Always") and owner["kind"] == "Deployment":
            self.err(where, "a Deployment's restartPolicy must be Always")

    def egress(self, name: str, owner: Obj, t: Obj, configmaps: dict[str, dict], policies: list[Obj]) -> None:
        """Every address a container is configured to call is admitted by its pod's egress."""
        labels = dig(t, "metadata", "labels") or {}
        mine = [p for p in policies if selector_matches(dig(p, "spec", "podSelector"), labels)]
        egress_policies = [p for p in mine if "Egress" in (dig(p, "spec", "policyTypes") or [])]
        rules = [r for p in egress_policies for r in dig(p, "spec", "egress") or []]
        for c in dig(t, "spec", "containers") or []:
            env: dict[str, str] = {}
            for ef in c.get("envFrom") or []:
                env.update(configmaps.get(dig(ef, "configMapRef", "name"), {}))
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = str(e["value"])
            binary = (c.get("command") or ["callers-server"])[0]
            for var, readers in OUTBOUND_URL_VARS.items():
                if var not in env or (readers is not None and binary not in readers):
                    continue
                where = f"{name} {rid(owner)} container {c['name']}: {var}={env[var]}"
                url = urlsplit(env[var])
                try:
                    port = url.port or DEFAULT_PORTS.get(url.scheme)
                except ValueError:
                    port = None
                if not url.hostname or port is None:
                    self.err(where, "is not a URL with a host and a port (or http/https)")
                    continue
                if not egress_policies:
                    continue  # no policy restricts this pod's egress
                # host: service.namespace.svc[.cluster.local]; any other form names no namespace.
                parts = url.hostname.split(".")
                namespace = parts[1] if len(parts) >= 3 and parts[2] == "svc" else None
                if not any(port_admitted(port, [r]) and peer_admits_namespace(r, namespace) for r in rules):
                    self.err(where, f"no egress rule of {', '.join(rid(p) for p in egress_policies)} admits "
                                    f"TCP port {port}{' in namespace ' + namespace if namespace else ''}")

    def monitoring(self, name: str, by_kind: dict[str, list[Obj]]) -> None:
        """The ServiceMonitor scrapes a Service port that exists, and the alert rules select the
        jobs that exist: the scraped Services' names and the purge's Pushgateway job."""
        services = by_kind.get("Service", [])
        jobs = {PUSHGATEWAY_JOB}
        for sm in by_kind.get("ServiceMonitor", []):
            where = f"{name} {rid(sm)}"
            if dig(sm, "spec", "jobLabel"):
                self.err(where, "jobLabel is set: the alert rules expect job = the Service's name")
            sel = dig(sm, "spec", "selector") or {}
            for ep in dig(sm, "spec", "endpoints") or []:
                hits = [s for s in services if selector_matches(sel, dig(s, "metadata", "labels") or {})
                        and any(p.get("name") == ep.get("port") for p in dig(s, "spec", "ports") or [])]
                if not hits:
                    self.err(where, f"no Service it selects has a port named {ep.get('port')}")
                jobs |= {s["metadata"]["name"] for s in hits}
        for pr in by_kind.get("PrometheusRule", []):
            for g in dig(pr, "spec", "groups") or []:
                for r in g.get("rules") or []:
                    for job in sorted(set(re.findall(r'\bjob\s*=\s*"([^"]*)"', str(r.get("expr", ""))))):
                        if job not in jobs:
                            self.err(f"{name} {rid(pr)}", f"{r.get('alert') or r.get('record')} selects job=\"{job}\", "
                                                          f"which is neither a scraped Service nor {PUSHGATEWAY_JOB}")

    def secret_ref(self, where: str, name: str | None, key: str | None) -> None:
        """Secrets are created by operators: each one referenced must be documented."""
        if not name or f"`{name}`" not in self.secrets_doc:
            self.err(where, f"Secret {name} is not documented in deploy/k8s/secrets.example.md")
        elif key and f"`{key}`" not in self.secrets_doc:
            self.err(where, f"key {key} of Secret {name} is not documented in deploy/k8s/secrets.example.md")

    def deployment(self, name: str, d: Obj, configmaps: dict[str, dict]) -> None:
        where = f"{name} {rid(d)}"
        spec = dig(d, "spec", "template", "spec") or {}
        grace_env: dict[str, str] = {}
        for c in spec.get("containers") or []:
            cw = f"{where} container {c['name']}"
            if not dig(c, "readinessProbe", "grpc", "port"):
                self.err(cw, "readinessProbe must be the native gRPC health check")
            if not c.get("livenessProbe"):
                self.err(cw, "no livenessProbe")
            for ef in c.get("envFrom") or []:
                grace_env.update(configmaps.get(dig(ef, "configMapRef", "name"), {}))
            for e in c.get("env") or []:
                if "value" in e:
                    grace_env[e["name"]] = e["value"]
            sleep = dig(c, "lifecycle", "preStop", "sleep", "seconds") or 0
            grace = int(grace_env.get("CALLERS_SHUTDOWN_GRACE_SECS", 20)) + int(sleep)
            tgps = spec.get("terminationGracePeriodSeconds", 30)
            if tgps <= grace:
                self.err(where, f"terminationGracePeriodSeconds {tgps} must exceed preStop sleep + "
                                f"CALLERS_SHUTDOWN_GRACE_SECS = {grace}")

    def services(self, name: str, services: list[Obj], templates: list[tuple[Obj, Obj]]) -> None:
        for s in services:
            where = f"{name} {rid(s)}"
            sel = dig(s, "spec", "selector") or {}
            pods = [t for _, t in templates if sel and selector_matches({"matchLabels": sel}, dig(t, "metadata", "labels") or {})]
            if not pods:
                self.err(where, "selector matches no pod template")
                continue
            ports = [p for t in pods for c in dig(t, "spec", "containers") or [] for p in c.get("ports") or []]
            for sp in dig(s, "spec", "ports") or []:
                tp = sp.get("targetPort", sp.get("port"))
                if not any(p.get("name") == tp or p.get("containerPort") == tp for p in ports):
                    self.err(where, f"port {sp.get('name')}: targetPort {tp} is no container port")

    def job(self, name: str, o: Obj, spec: Obj) -> None:
        where = f"{name} {rid(o)}"
        for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            if field not in spec:
                self.err(where, f"job spec has no {field}")
        pfp = spec.get("podFailurePolicy")
        pod = dig(spec, "template", "spec") or {}
        names = {c["name"] for c in pod.get("containers") or []}
        if pfp:
            if pod.get("restartPolicy") != "Never":
                self.err(where, "podFailurePolicy needs restartPolicy: Never")
            for r in pfp.get("rules") or []:
                cn = dig(r, "onExitCodes", "containerName")
                if cn is not None and cn not in names:
                    self.err(where, f"podFailurePolicy names container {cn}, which does not exist")

    def cronjob(self, name: str, c: Obj) -> None:
        where = f"{name} {rid(c)}"
        spec = c.get("spec") or {}
        for field in ("timeZone", "startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
            if field not in spec:
                self.err(where, f"no {field}")
        if spec.get("concurrencyPolicy") != "Forbid":
            self.err(where, "concurrencyPolicy must be Forbid")
        job = dig(spec, "jobTemplate", "spec") or {}
        self.job(name, c, job)
        if c["metadata"]["name"] == "callers-purge":
            rules = dig(job, "podFailurePolicy", "rules") or []
            if not any(r.get("action") == "FailJob" and dig(r, "onExitCodes", "containerName") == "purge"
                       and dig(r, "onExitCodes", "operator") == "In" and 2 in (dig(r, "onExitCodes", "values") or [])
                       for r in rules):
                self.err(where, "podFailurePolicy must FailJob on exit code 2 of container purge (configuration errors)")
            if not any(r.get("action") == "Ignore" and any(pc.get("type") == "DisruptionTarget" for pc in r.get("onPodConditions") or [])
                       for r in rules):
                self.err(where, "podFailurePolicy must Ignore DisruptionTarget")

    def docs(self) -> None:
        """docs/OPERATIONS.md lists every flag and variable of both binaries with its default."""
        path = self.repo / "docs/OPERATIONS.md"
        if not path.exists():
            self.err("docs/OPERATIONS.md", "missing")
            return
        lines = path.read_text().splitlines()
        for a in self.server_args + self.purge_args:
            rows = [line for line in lines if f"`{a.flag}`" in line]
            if not rows:
                self.err("docs/OPERATIONS.md", f"{a.flag} ({a.source}) is not documented")
                continue
            if a.env and not any(f"`{a.env}`" in r for r in rows):
                self.err("docs/OPERATIONS.md", f"the row of {a.flag} does not name its variable {a.env}")
            if a.default is not None and not any(f"`{a.default}`" in r for r in rows):
                self.err("docs/OPERATIONS.md", f"the row of {a.flag} does not give its default `{a.default}`")


def compare(a_path: str, b_path: str) -> list[str]:
    def index(path: str) -> dict[str, Obj]:
        return {f"{o['apiVersion']} {rid(o)}": o for o in load(path)}

    a, b = index(a_path), index(b_path)
    problems = [f"only in {a_path}: {k}" for k in sorted(set(a) - set(b))]
    problems += [f"only in {b_path}: {k}" for k in sorted(set(b) - set(a))]
    for k in sorted(set(a) & set(b)):
        if a[k] != b[k]:
            import difflib

            diff = difflib.unified_diff(
                yaml.safe_dump(a[k], sort_keys=True).splitlines(),
                yaml.safe_dump(b[k], sort_keys=True).splitlines(),
                a_path, b_path, lineterm="",
            )
            problems.append(f"{k} differs:\n" + "\n".join(diff))
    return problems


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "compare" and len(argv) == 4:
        problems = compare(argv[2], argv[3])
        for p in problems:
            print(f"k8s-check: {p}", file=sys.stderr)
        return 1 if problems else 0
    if len(argv) < 2 or argv[1] != "validate":
        print(__doc__, file=sys.stderr)
        return 2
    args = argv[2:]
    repo, versions, renders = None, None, []
    while args:
        a = args.pop(0)
        if a == "--repo":
            repo = Path(args.pop(0))
        elif a == "--versions":
            versions = args.pop(0).split(",")
        else:
            n, _, p = a.partition("=")
            renders.append((n, p))
    if repo is None or not versions or not renders:
        print(__doc__, file=sys.stderr)
        return 2
    ch = Checker(repo)
    if not ch.server_args:
        ch.err("crates/server/src", "found no clap arguments: the parser in k8s_check.py is out of date")
    count = 0
    for n, p in renders:
        objs = load(p)
        if not objs:
            ch.err(n, "renders no objects")
        count += len(objs)
        ch.schema(n, objs, versions)
        ch.rules(n, objs, overlay=n != "base", prod=n == "prod")
    ch.docs()
    ch.crd_self_test()
    for e in ch.errors:
        print(f"k8s-check: {e}", file=sys.stderr)
    if ch.errors:
        print(f"k8s-check: {len(ch.errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"k8s-check: {count} objects in {len(renders)} renders valid against Kubernetes "
          f"{', '.join(versions)} (strict) and the project's rules; "
          f"{len(ch.server_args)} server and {len(ch.purge_args)} purge flags documented")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
