#!/usr/bin/env python3
"""Assert the runtime rules (runtime_rules.py) on a compose file.

    check_compose.py [docker-compose.yml]

Every service that runs the binary (its command starts with `serve`): OTLP
endpoints on the OTLP/HTTP port; for a worker, TRIGGERS_SHUTDOWN_TIMEOUT
above TRIGGERS_WEBHOOK_TIMEOUT; `stop_grace_period` (compose's default is
10 s) above TRIGGERS_SHUTDOWN_TIMEOUT. Unset variables take the binary's
defaults, read from src/.
"""
import os
import sys

import yaml

from runtime_rules import OTLP_VARIABLES, ROOT, duration_seconds, otlp_problem, shutdown_problems

COMPOSE_DEFAULT_GRACE = "10s"


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


def role_of(command):
    args = command.split() if isinstance(command, str) else list(command or [])
    if not args or args[0] != "serve":
        return None
    if "--role" in args[:-1]:
        return args[args.index("--role") + 1]
    return "all"


def check(path):
    with open(path, encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    problems, checked = [], []
    for name, service in (compose.get("services") or {}).items():
        role = role_of(service.get("command"))
        if role is None:
            continue
        checked.append(f"{name} ({role})")
        env = environment(service)
        for variable in OTLP_VARIABLES:
            if env.get(variable):
                problem = otlp_problem(variable, env[variable])
                if problem:
                    problems.append(f"{name}: {problem}")
        grace = duration_seconds(service.get("stop_grace_period", COMPOSE_DEFAULT_GRACE))
        problems += shutdown_problems(name, role, env, grace)
    if not checked:
        problems.append("no service runs `serve`: nothing checked")
    return problems, checked


def main(argv):
    path = argv[0] if argv else os.path.join(ROOT, "docker-compose.yml")
    problems, checked = check(path)
    for problem in problems:
        print(f"FAIL {path}: {problem}")
    if problems:
        return 1
    print(f"ok   {path}: OTLP over HTTP, shutdown and grace periods of {', '.join(checked)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
