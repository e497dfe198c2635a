#!/usr/bin/env python3
"""Static checks of the Dockerfile, for what a build does not report.

    check_dockerfile.py [Dockerfile]

* A global ARG (before the first FROM) is seen only by FROM lines: a stage
  that expands one elsewhere must declare it again, or it expands to ""
  (a label read `debian:-slim`). Any variable a LABEL or ENV expands must be
  declared in its stage.
* Per-build values (the ARGs in PER_BUILD) and LABELs come after every RUN
  that installs packages in their stage: a RUN after them runs again on
  every new revision.
* GIT_COMMIT, which build.rs reads, is a build argument and reaches the
  cargo build.
* `RUN --mount` needs BuildKit: the file says so, and has no `# syntax=`
  line (that would make BuildKit fetch its frontend from a registry, which
  an offline build cannot reach; the engine's own frontend knows the mount).
* The header's `docker run` example passes TRIGGERS_SECRET_KEYS, without
  which production mode (the default) exits 1.
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PER_BUILD = {"VERSION", "REVISION", "CREATED", "GIT_COMMIT"}
INSTALLS = re.compile(r"\b(apt-get|apt|apk|dnf|yum)\s+(install|update|add)\b")
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def instructions(text):
    """(line number, keyword, arguments) of each instruction, continuations joined."""
    result, buffer, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, rest = buffer.partition(" ")
        result.append((start, keyword.upper(), rest.strip()))
        buffer = ""
    return result


def arg_names(rest):
    return [token.split("=", 1)[0] for token in rest.split()]


def check(text):
    problems = []
    global_args, stages = set(), []
    for line, keyword, rest in instructions(text):
        if keyword == "FROM":
            words = rest.split()
            name = words[-1] if len(words) > 2 and words[-2].upper() == "AS" else f"{len(stages)} ({words[0]})"
            stages.append({"name": name, "items": []})
        elif not stages:
            if keyword == "ARG":
                global_args.update(arg_names(rest))
        else:
            stages[-1]["items"].append((line, keyword, rest))

    for stage in stages:
        declared, label_or_build_arg = set(), None
        for line, keyword, rest in stage["items"]:
            if keyword in ("ARG", "ENV"):
                names = arg_names(rest) if keyword == "ARG" else re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest)
                declared.update(names)
                if keyword == "ARG" and PER_BUILD & set(names) and label_or_build_arg is None:
                    label_or_build_arg = (line, f"ARG {' '.join(sorted(PER_BUILD & set(names)))}")
            if keyword == "LABEL" and label_or_build_arg is None:
                label_or_build_arg = (line, "LABEL")
            used = set(VARIABLE.findall(rest))
            for name in sorted(used - declared):
                if name in global_args:
                    problems.append(f"line {line}: stage {stage['name']} expands ${name}, a global ARG it does not "
                                    f"declare again (ARG {name}): it is empty there")
                elif keyword in ("LABEL", "ENV", "COPY", "WORKDIR", "USER", "EXPOSE"):
                    problems.append(f"line {line}: {keyword} expands ${name}, which stage {stage['name']} never declares")
            if keyword == "RUN" and INSTALLS.search(rest) and label_or_build_arg:
                first, what = label_or_build_arg
                problems.append(f"line {line}: stage {stage['name']} installs packages after {what} (line {first}): "
                                "every new revision would install them again; move the per-build block below")

    builder = [s for s in stages if any("cargo build" in rest for _, k, rest in s["items"] if k == "RUN")]
    for stage in builder:
        args = {n for _, k, rest in stage["items"] if k == "ARG" for n in arg_names(rest)}
        if "GIT_COMMIT" not in args:
            problems.append(f"stage {stage['name']} runs cargo build without ARG GIT_COMMIT, which build.rs reads")
    if not builder:
        problems.append("no stage runs cargo build")

    if "--mount" in text:
        if text.startswith("# syntax="):
            problems.append("a `# syntax=` line makes BuildKit fetch its frontend from a registry; "
                            "the engine's own frontend knows RUN --mount")
        if "BuildKit" not in text:
            problems.append("RUN --mount needs BuildKit, and no comment says so")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    runs = [m.group(0) for m in re.finditer(r"docker run\b(?:[^\n]*\\\n#)*[^\n]*", header)]
    for example in runs:
        if "serve" in example and "TRIGGERS_SECRET_KEYS" not in example and "TRIGGERS_ENV=development" not in example:
            problems.append(f"the example `{' '.join(example.split())}` exits 1 in production mode: "
                            "it passes no TRIGGERS_SECRET_KEYS")
    return problems


def main(argv):
    path = argv[0] if argv else os.path.join(ROOT, "Dockerfile")
    with open(path, encoding="utf-8") as f:
        problems = check(f.read())
    for problem in problems:
        print(f"FAIL {path}: {problem}")
    if problems:
        return 1
    print(f"ok   {path}: stage ARGs declared, per-build labels after package installs, "
          "GIT_COMMIT passed to cargo, BuildKit stated, runnable example")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
