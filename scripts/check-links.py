#!/usr/bin/env python3
"""Check that every relative link of every tracked Markdown file resolves.

    python3 scripts/check-links.py [FILE.md ...]

A link resolves when the file or directory it names exists (relative to the
file that links, or to the repository root when it starts with `/`) and, if
it carries a `#fragment` and names a Markdown file (or is only a fragment),
that file has a heading whose GitHub anchor is the fragment. Links with a
scheme (https:, mailto:) are not followed; links inside code are not links.

GitHub's anchors: the heading's text as rendered, lowercased, every
character that is not a letter, a digit, a space, `-` or `_` dropped, each
space turned into `-`; a repeated anchor gets `-1`, `-2`… in order. Explicit
`<a name="…">` and `id="…"` anchors count too.

It also fails on a table cut in two by a blank line: GitHub renders the
rows after it as a paragraph of pipes.

Standard library only, so it runs anywhere python3 does. Exit status 1 on
any failure, each printed as `FAIL file:line: …`.
"""
import os
import re
import subprocess
import sys
from urllib.parse import unquote

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of
# brackets (an image inside a link, `[x]` in prose).
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]*(?:\([^\s)]*\)[^\s)]*)*)"
                    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<[a-z][^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
TABLE_ROW = re.compile(r"^ {0,3}\|")
DELIMITER_ROW = re.compile(r"^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# Headings as GitHub anchors them, checked on every run so that the rules
# above cannot drift unnoticed.
KNOWN_ANCHORS = [
    ("How an event travels", "how-an-event-travels"),
    ("Where `that` lives in the code", "where-that-lives-in-the-code"),
    ("Runbook: TriggersRoleDown", "runbook-triggersroledown"),
    ("Work before authentication, slow clients, outages", "work-before-authentication-slow-clients-outages"),
    ("`TRIGGERS_MIGRATE` and **upgrades**", "triggers_migrate-and-upgrades"),
    ("Install — the chart (v2)", "install--the-chart-v2"),
    ("[Leases](#x) and quarantine", "leases-and-quarantine"),
]


def tracked_markdown():
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "*.md"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        return sorted(p for p in out.split("\0") if p)
    except (OSError, subprocess.CalledProcessError):
        # Not a git checkout (an unpacked archive): every Markdown file but
        # the git-ignored build and data directories.
        found = []
        for base, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in {".git", ".data", "target"}]
            found += [os.path.relpath(os.path.join(base, f), ROOT) for f in files if f.endswith(".md")]
        return sorted(found)


def prose_lines(text):
    """(line number, line) of every line outside fenced code blocks, with
    code spans blanked out so that nothing in code counts as a link."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        yield number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def heading_text(raw):
    """The text GitHub renders for a heading's source."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)                                        # inline HTML
    text = re.sub(r"(\*{1,3}|\b_{1,3})(\S(?:.*?\S)?)\1", r"\2", text)          # emphasis
    return text.strip()


def slug(text):
    text = heading_text(text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every anchor a Markdown file defines."""
    found, counts = set(), {}
    previous = ""
    fence = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            previous = ""
            continue
        if match:
            fence = match.group(1)
            previous = ""
            continue
        heading = None
        atx = ATX.match(line)
        if atx:
            heading = atx.group(2) or ""
        elif SETEXT.match(line) and previous.strip() and not previous.lstrip().startswith(("|", "-", "*", ">")) \
                and not ATX.match(previous):
            heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found.update(m.group(1) for m in HTML_ANCHOR.finditer(line))
        previous = line
    return found


def split_tables(text):
    """Line numbers of table rows that follow a blank line ending a table,
    without being a new table's header (whose next line is a delimiter)."""
    lines = text.splitlines()
    prose = {number for number, _ in prose_lines(text)}
    found = []
    for number in range(3, len(lines) + 1):
        if not {number - 2, number - 1, number} <= prose:
            continue
        before, blank, row = lines[number - 3], lines[number - 2], lines[number - 1]
        after = lines[number] if number < len(lines) else ""
        if TABLE_ROW.match(row) and TABLE_ROW.match(before) and not blank.strip() \
                and not DELIMITER_ROW.match(after):
            found.append(number)
    return found


def links(text):
    """(line number, target) of every link in the file's prose."""
    for number, line in prose_lines(text):
        for match in INLINE.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE.match(line)
        if reference:
            yield number, reference.group(1)
        for match in HTML_LINK.finditer(line):
            yield number, match.group(1)


def check(path, cache):
    """How many relative links `path` (relative to ROOT) has, and a failure
    message for each broken one."""
    def anchors_of(file):
        if file not in cache:
            with open(file, encoding="utf-8") as f:
                cache[file] = anchors(f.read())
        return cache[file]

    failures, checked = [], 0
    source = os.path.join(ROOT, path)
    with open(source, encoding="utf-8") as f:
        text = f.read()
    for number, target in links(text):
        target = target.strip("<>").strip()
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue
        checked += 1
        file_part, _, fragment = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        if file_part:
            base = ROOT if file_part.startswith("/") else os.path.dirname(source)
            resolved = os.path.normpath(os.path.join(base, file_part.lstrip("/")))
            if os.path.relpath(resolved, ROOT).split(os.sep)[0] == "..":
                failures.append(f"{path}:{number}: {target}: points outside the repository")
                continue
            if not os.path.exists(resolved):
                failures.append(f"{path}:{number}: {target}: no such file")
                continue
        else:
            resolved = source
        if fragment and resolved.endswith(".md") and os.path.isfile(resolved):
            if unquote(fragment) not in anchors_of(resolved):
                failures.append(f"{path}:{number}: {target}: "
                                f"{os.path.relpath(resolved, ROOT)} has no heading with anchor #{fragment}")
    failures += [f"{path}:{number}: a blank line cuts the table above in two" for number in split_tables(text)]
    return checked, failures


def main(args):
    for heading, anchor in KNOWN_ANCHORS:
        if slug(heading) != anchor:
            print(f"FAIL the anchor of {heading!r} is {slug(heading)!r}, GitHub makes it {anchor!r}")
            return 1
    paths = [os.path.relpath(os.path.abspath(a), ROOT) for a in args] or tracked_markdown()
    cache, failures, count = {}, [], 0
    for path in paths:
        checked, found = check(path, cache)
        count += checked
        failures += found
    for failure in failures:
        print(f"FAIL {failure}")
    if failures:
        print(f"{len(failures)} failures in {len(paths)} Markdown files")
        return 1
    print(f"ok   {count} relative links and anchors in {len(paths)} Markdown files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
