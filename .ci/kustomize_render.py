#!/usr/bin/env python3
"""Renders a kustomization directory the way `kustomize build` does, for the subset of
kustomize that deploy/k8s uses, so CI can render the overlays on a machine without kustomize
(no registry this project reaches ships it).

Supported, and nothing else (anything else is an error, never silently ignored):
  - resources: local YAML files and directories holding a kustomization.yaml
  - components: local directories holding a `kind: Component` kustomization, applied after the
    resources as kustomize does: the component's resources join the ones accumulated so far,
    then its transformers (the fields below) run over all of them
  - namespace: set on every object (cluster-scoped kinds are refused)
  - labels: [{pairs, includeSelectors: false, includeTemplates}] (metadata and pod templates)
  - images: [{name, newName, newTag, digest}] on containers and initContainers
  - replicas: [{name, count}] on Deployments and StatefulSets
  - patches: [{path}] strategic-merge patches addressed by their own kind and name, including a
    top-level `$patch: delete`; lists merge by the Kubernetes merge keys in MERGE_KEYS, other
    lists in a patch are refused

Where `kubectl kustomize` is available, .ci/k8s-validate also renders with it and requires the
same objects, so this subset cannot drift from the real thing unnoticed.

Usage: kustomize_render.py DIR  (the rendered multi-document YAML goes to stdout)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "labels",
    "images",
    "replicas",
    "patches",
}

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "IngressClass",
}

# Where pod templates live, per kind (kustomize's template field specs).
TEMPLATE_LABEL_PATHS = {
    "Deployment": [("spec", "template", "metadata", "labels")],
    "ReplicaSet": [("spec", "template", "metadata", "labels")],
    "DaemonSet": [("spec", "template", "metadata", "labels")],
    "StatefulSet": [("spec", "template", "metadata", "labels")],
    "Job": [("spec", "template", "metadata", "labels")],
    "CronJob": [
        ("spec", "jobTemplate", "metadata", "labels"),
        ("spec", "jobTemplate", "spec", "template", "metadata", "labels"),
    ],
}

POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

REPLICA_KINDS = {"Deployment", "StatefulSet", "ReplicaSet"}

COMPONENT_API_VERSION = "kustomize.config.k8s.io/v1alpha1"

# Strategic-merge keys (Kubernetes' patchMergeKey) of the lists a patch may contain, by field
# name; a patch that contains any other list is refused.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class RenderError(Exception):
    pass


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise RenderError(f"cannot read {path}: {e}") from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise RenderError(f"{path}: invalid YAML: {e}") from e
    for d in docs:
        if not isinstance(d, dict):
            raise RenderError(f"{path}: a document is not a mapping")
    return docs


def res_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): kustomize matches patches by all of them."""
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


def show(rid: tuple[str, str, str, str]) -> str:
    api, kind, ns, name = rid
    return f"{kind} ({api}) {ns + '/' if ns else ''}{name}"


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def ensure_map(obj: dict[str, Any], path: tuple[str, ...], where: str) -> dict[str, Any]:
    for key in path:
        nxt = obj.get(key)
        if nxt is None:
            nxt = obj[key] = {}
        if not isinstance(nxt, dict):
            raise RenderError(f"{where}: {'.'.join(path)} is not a mapping")
        obj = nxt
    return obj


# --- strategic merge ---------------------------------------------------------------------------


def merge_map(base: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...], where: str) -> None:
    for key, value in patch.items():
        if key.startswith("$"):
            raise RenderError(f"{where}: directive {key} at {'.'.join(path) or '.'} is not supported")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_map(base[key], value, path + (key,), where)
        elif isinstance(value, list):
            if key in base and not isinstance(base[key], list):
                raise RenderError(f"{where}: {'.'.join(path + (key,))} is a list in the patch only")
            base[key] = merge_list(base.get(key, []), value, path + (key,), where)
        else:
            base[key] = copy.deepcopy(value)


def merge_list(base: list[Any], patch: list[Any], path: tuple[str, ...], where: str) -> list[Any]:
    field = path[-1]
    key = MERGE_KEYS.get(field)
    if key is None:
        raise RenderError(
            f"{where}: the patch sets the list {'.'.join(path)}, which the renderer subset cannot "
            f"merge (known merge keys: {', '.join(sorted(MERGE_KEYS))}); patch a scalar or map, "
            "or extend MERGE_KEYS to match kustomize"
        )
    # kustomize's order: the patch's items first, in the patch's order (merged into the base's
    # item of the same key where there is one), then the base's other items in their order.
    rest = copy.deepcopy(base)
    result = []
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise RenderError(f"{where}: every item of {'.'.join(path)} needs its merge key {key}")
        if any(k.startswith("$") for k in item):
            raise RenderError(f"{where}: directives inside {'.'.join(path)} are not supported")
        match = [b for b in rest if isinstance(b, dict) and b.get(key) == item[key]]
        if match:
            rest.remove(match[0])
            merge_map(match[0], item, path, where)
            result.append(match[0])
        else:
            result.append(copy.deepcopy(item))
    return result + rest


# --- transformers ------------------------------------------------------------------------------


def apply_patch(objs: list[dict[str, Any]], patch: dict[str, Any], where: str) -> list[dict[str, Any]]:
    pid = res_id(patch)
    # A patch without a namespace addresses the object whatever its namespace.
    matches = [
        i
        for i, o in enumerate(objs)
        if res_id(o)[:2] == pid[:2]
        and res_id(o)[3] == pid[3]
        and (not pid[2] or res_id(o)[2] == pid[2])
    ]
    if len(matches) != 1:
        raise RenderError(f"{where}: patch for {show(pid)} matches {len(matches)} objects, not 1")
    i = matches[0]
    body = dict(patch)
    directive = body.pop("$patch", None)
    if directive == "delete":
        return objs[:i] + objs[i + 1 :]
    if directive is not None:
        raise RenderError(f"{where}: $patch: {directive} is not supported")
    target = copy.deepcopy(objs[i])
    merge_map(target, body, (), where)
    return objs[:i] + [target] + objs[i + 1 :]


def apply_labels(objs: list[dict[str, Any]], entries: list[Any], where: str) -> None:
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"pairs", "includeSelectors", "includeTemplates"}:
            raise RenderError(f"{where}: labels entries take pairs, includeSelectors, includeTemplates")
        if entry.get("includeSelectors"):
            raise RenderError(f"{where}: labels with includeSelectors: true are not supported")
        pairs = entry.get("pairs") or {}
        for obj in objs:
            ensure_map(obj, ("metadata", "labels"), where).update(pairs)
            if entry.get("includeTemplates"):
                for path in TEMPLATE_LABEL_PATHS.get(obj["kind"], []):
                    ensure_map(obj, path, where).update(pairs)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def apply_images(objs: list[dict[str, Any]], entries: list[Any], where: str) -> None:
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry or set(entry) - {"name", "newName", "newTag", "digest"}:
            raise RenderError(f"{where}: images entries take name, newName, newTag, digest")
        used = False
        for obj in objs:
            spec = get_path(obj, POD_SPEC_PATHS.get(obj["kind"], ("-",)))
            if not isinstance(spec, dict):
                continue
            for field in ("initContainers", "containers"):
                for c in spec.get(field) or []:
                    name, tag, digest = split_image(str(c.get("image", "")))
                    if name != entry["name"]:
                        continue
                    used = True
                    new = str(entry.get("newName", name))
                    if "digest" in entry:
                        new += "@" + str(entry["digest"])
                    elif "newTag" in entry:
                        new += ":" + str(entry["newTag"])
                    elif tag is not None:
                        new += ":" + tag + ("@" + digest if digest else "")
                    elif digest:
                        new += "@" + digest
                    c["image"] = new
        if not used:
            raise RenderError(f"{where}: images entry {entry['name']} matches no container")


def apply_replicas(objs: list[dict[str, Any]], entries: list[Any], where: str) -> None:
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"name", "count"}:
            raise RenderError(f"{where}: replicas entries take name and count")
        hits = [o for o in objs if o["kind"] in REPLICA_KINDS and o["metadata"]["name"] == entry["name"]]
        if not hits:
            raise RenderError(f"{where}: replicas entry {entry['name']} matches no workload")
        for o in hits:
            ensure_map(o, ("spec",), where)["replicas"] = entry["count"]


def load_kustomization(directory: Path, kind: str) -> tuple[dict[str, Any], Path]:
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    docs = load_yaml_docs(kfile)
    if len(docs) != 1:
        raise RenderError(f"{kfile}: expected one document")
    k = docs[0]
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        raise RenderError(f"{kfile}: fields outside the supported subset: {', '.join(sorted(unknown))}")
    if k.get("kind", "Kustomization") != kind:
        raise RenderError(f"{kfile}: kind must be {kind}")
    if kind == "Component" and k.get("apiVersion") != COMPONENT_API_VERSION:
        raise RenderError(f"{kfile}: a Component's apiVersion is {COMPONENT_API_VERSION}")
    return k, kfile


def load_resources(k: dict[str, Any], directory: Path, kfile: Path, seen: tuple[Path, ...]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for entry in k.get("resources") or []:
        path = directory / str(entry)
        if path.is_dir():
            objs.extend(render(path, seen + (directory,)))
        elif path.is_file():
            for d in load_yaml_docs(path):
                for field in ("apiVersion", "kind"):
                    if field not in d:
                        raise RenderError(f"{path}: a document has no {field}")
                if not get_path(d, ("metadata", "name")):
                    raise RenderError(f"{path}: a {d['kind']} has no metadata.name")
                objs.append(d)
        else:
            raise RenderError(f"{kfile}: resource {entry} is neither a file nor a directory")
    return objs


def check_duplicates(objs: list[dict[str, Any]], kfile: Path) -> None:
    ids = [res_id(o) for o in objs]
    dupes = {show(i) for i in ids if ids.count(i) > 1}
    if dupes:
        raise RenderError(f"{kfile}: duplicate objects: {', '.join(sorted(dupes))}")


def transform(objs: list[dict[str, Any]], k: dict[str, Any], directory: Path, kfile: Path) -> list[dict[str, Any]]:
    """kustomize's order: patches, namespace, labels, replicas, images."""
    where = str(kfile)
    for entry in k.get("patches") or []:
        if not isinstance(entry, dict) or set(entry) != {"path"}:
            raise RenderError(f"{kfile}: patches entries take only path (strategic merge by kind and name)")
        ppath = directory / str(entry["path"])
        for patch in load_yaml_docs(ppath):
            objs = apply_patch(objs, patch, str(ppath))

    if "namespace" in k:
        for o in objs:
            if o["kind"] in CLUSTER_SCOPED:
                raise RenderError(f"{kfile}: {o['kind']} is cluster-scoped; the subset has no such objects")
            o["metadata"]["namespace"] = k["namespace"]
    apply_labels(objs, k.get("labels") or [], where)
    apply_replicas(objs, k.get("replicas") or [], where)
    apply_images(objs, k.get("images") or [], where)
    return objs


def render(directory: Path, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    directory = directory.resolve()
    if directory in seen:
        raise RenderError(f"{directory}: kustomization cycle")
    k, kfile = load_kustomization(directory, "Kustomization")
    objs = load_resources(k, directory, kfile, seen)
    for entry in k.get("components") or []:
        cdir = (directory / str(entry)).resolve()
        if cdir in seen or cdir == directory:
            raise RenderError(f"{cdir}: kustomization cycle")
        ck, ckfile = load_kustomization(cdir, "Component")
        if "components" in ck:
            raise RenderError(f"{ckfile}: components inside a component are not supported")
        objs = objs + load_resources(ck, cdir, ckfile, seen + (directory,))
        check_duplicates(objs, ckfile)
        objs = transform(objs, ck, cdir, ckfile)
    check_duplicates(objs, kfile)
    return transform(objs, k, directory, kfile)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        objs = render(Path(argv[1]))
    except RenderError as e:
        print(f"kustomize_render: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objs, sort_keys=True, default_flow_style=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
