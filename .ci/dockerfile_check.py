#!/usr/bin/env python3
"""The image rules of deploy/Dockerfile that the Dockerfile linter (.ci/image-check) has no rule
for: base images pinned through ARGs whose defaults carry a version tag or digest, a final
USER that is a numeric non-root uid (Kubernetes can enforce runAsNonRoot only for a number),
HEALTHCHECK in exec form or NONE.

Usage: dockerfile_check.py DOCKERFILE  (exits 1 listing every problem)
"""

from __future__ import annotations

import json
import re
import sys


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[int, str, str]] = []
    pending, start = "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> bool:
    try:
        value = json.loads(args)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and bool(value)


def check(path: str) -> list[str]:
    problems: list[str] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    user = None
    last_from = 0
    for n, word, rest in instructions(open(path).read()):
        where = f"{path}:{n}"
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif word == "FROM":
            last_from, user = n, None
            parts = rest.split()
            image = parts[0]
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
            if image in stages:
                continue
            m = re.fullmatch(r"\$\{?(\w+)\}?", image)
            if not m or m.group(1) not in args:
                problems.append(f"{where}: base image {image} is not an ARG declared before FROM (pin it there)")
                continue
            default = args[m.group(1)]
            tag = default.rpartition("/")[2]
            if not default or ("@sha256:" not in default and (":" not in tag or tag.endswith(":latest"))):
                problems.append(f"{where}: ARG {m.group(1)}={default} has no version tag or digest")
        elif word == "USER":
            user = rest
        elif word == "HEALTHCHECK":
            cmd = re.sub(r"^(--\S+\s+)*", "", rest)
            if cmd.upper() != "NONE" and not (cmd.upper().startswith("CMD ") and exec_form(cmd[4:].strip())):
                problems.append(f"{where}: HEALTHCHECK must be NONE or CMD in exec form")
        elif word in ("ENTRYPOINT", "CMD") and not exec_form(rest):
            problems.append(f"{where}: {word} must be in exec form (JSON array), so signals reach the binary")
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user or "")
    if not m:
        problems.append(f"{path}: the final stage (FROM at line {last_from}) must end with USER uid[:gid] in numbers, not {user}")
    elif int(m.group(1)) == 0 or (m.group(2) is not None and int(m.group(2)) == 0):
        problems.append(f"{path}: the final stage's USER {user} is root")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(argv[1])
    for p in problems:
        print(f"dockerfile-check: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
