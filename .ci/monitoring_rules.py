#!/usr/bin/env python3
"""The alert rules of callers, as shipped (used by .ci/monitoring-check).

  monitoring_rules.py extract PROMETHEUSRULE.yaml
      The PrometheusRule's spec (its rule groups) as a Prometheus rule file, on stdout, so
      promtool checks and tests the very rules the manifest ships.
  monitoring_rules.py lint PROMETHEUSRULE.yaml TESTS.yaml OPERATIONS.md
      What promtool does not check: every alert has a severity, a summary, a description and a
      runbook_url pointing at a heading of OPERATIONS.md; every series the rules read is named
      in OPERATIONS.md; every alert has a test case where it fires and one where it does not.

Exits 1 listing every problem found.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

SEVERITIES = {"critical", "warning"}
ANNOTATIONS = ("summary", "description", "runbook_url")
RUNBOOK_DOC = "docs/OPERATIONS.md"
# The series of callers and of the libraries it exports through; PromQL functions, keywords and
# label names never start so (grpc_code, grpc_service, ... are labels: not grpc_server_).
SERIES = re.compile(r"\b((?:callers|grpc_server|process)_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|count|sum)$")


def load_rule(path: str) -> dict[str, Any]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        raise SystemExit(f"monitoring-rules: {path}: expected one PrometheusRule, found {len(rules)}")
    return rules[0]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def lint(rule_path: str, tests_path: str, doc_path: str) -> list[str]:
    problems: list[str] = []
    doc = open(doc_path).read()
    anchors = {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", doc, re.M)}
    alerts: list[str] = []
    for group in load_rule(rule_path)["spec"]["groups"]:
        for r in group.get("rules") or []:
            name = r.get("alert")
            for series in sorted({HISTOGRAM_SUFFIX.sub("", s) for s in SERIES.findall(str(r.get("expr", "")))}):
                if f"`{series}`" not in doc:
                    problems.append(f"{name or r.get('record')}: reads {series}, which {RUNBOOK_DOC} does not name")
            if not name:
                continue
            alerts.append(name)
            severity = (r.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                problems.append(f"{name}: severity {severity!r} is not one of {', '.join(sorted(SEVERITIES))}")
            annotations = r.get("annotations") or {}
            for a in ANNOTATIONS:
                if not annotations.get(a):
                    problems.append(f"{name}: no {a} annotation")
            url = annotations.get("runbook_url", "")
            page, _, anchor = url.partition("#")
            if page != RUNBOOK_DOC or anchor not in anchors:
                problems.append(f"{name}: runbook_url {url!r} is no heading of {RUNBOOK_DOC}")

    with open(tests_path) as f:
        tests = yaml.safe_load(f)
    fires: set[str] = set()
    silent: set[str] = set()
    for t in tests.get("tests") or []:
        for case in t.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else silent).add(case.get("alertname"))
    for name in alerts:
        if name not in fires:
            problems.append(f"{name}: no test case in {tests_path} where it fires")
        if name not in silent:
            problems.append(f"{name}: no test case in {tests_path} where it stays silent")
    for name in sorted((fires | silent) - set(alerts)):
        problems.append(f"{tests_path}: tests {name}, which is no alert of {rule_path}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "extract":
        sys.stdout.write(yaml.safe_dump(load_rule(argv[2])["spec"], sort_keys=False))
        return 0
    if len(argv) == 5 and argv[1] == "lint":
        problems = lint(argv[2], argv[3], argv[4])
        for p in problems:
            print(f"monitoring-rules: {p}", file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
