"""Checks the documentation: every relative link in README.md and docs/ points to an existing file
(and, for `#anchor` links, to an existing heading), the README opens with the two commands of a
fresh clone, its test command is the one `.ci/run` runs, and no tracked file names a machine path.

    python3 scripts/check_docs.py        # from anywhere in the repository; exit 1 on a problem
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def prose_lines(path):
    """The lines of a Markdown file outside fenced code blocks."""
    inside = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if FENCE.match(line.strip()):
                inside = not inside
                continue
            if not inside:
                yield n, line


def anchors(path):
    return {slug(line.lstrip("#")) for _, line in prose_lines(path) if line.startswith("#")}


def check_links(files):
    problems = []
    for md in files:
        for n, line in prose_lines(md):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
                where = f"{os.path.relpath(md, ROOT)}:{n}"
                if not os.path.exists(dest):
                    problems.append(f"{where}: link to a missing file: {target}")
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    problems.append(f"{where}: link to a missing heading: {target}")
    return problems


def readme_commands():
    """The commands of the README's first code block (comment lines left out)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"```\w*\n(.*?)```", text, re.S)
    if not block:
        return []
    return [l.strip() for l in block.group(1).splitlines() if l.strip() and not l.strip().startswith("#")]


def ci_test_command():
    """The command `.ci/run` runs after its comment "The README's test command"."""
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        lines = [l.strip() for l in f]
    for i, line in enumerate(lines):
        if line.startswith("# The README's test command"):
            return next((l for l in lines[i + 1:] if l and not l.startswith("#")), None)
    return None


def main():
    files = [os.path.join(ROOT, "README.md")]
    for d, _, names in os.walk(os.path.join(ROOT, "docs")):
        files += [os.path.join(d, n) for n in sorted(names) if n.endswith(".md")]
    problems = check_links(files)

    cmds = readme_commands()
    if len(cmds) < 2 or not cmds[0].startswith("cargo run --release -p tmd-cli -- generate "):
        problems.append(f"README.md: the first code block must open with `generate`, then the tests; found {cmds[:2]}")
    ci = ci_test_command()
    if len(cmds) >= 2 and ci != cmds[1]:
        problems.append(f"README.md's test command {cmds[1:2]} is not what .ci/run runs: {ci!r}")

    grep = subprocess.run(["git", "grep", "-n", "-I", "-E", r"/(work|root|home)/"],
                          cwd=ROOT, capture_output=True, text=True)
    problems += [f"machine path: {l}" for l in grep.stdout.splitlines()
                 if not l.startswith("scripts/check_docs.py:")]

    for p in problems:
        print(p)
    print(f"{len(files)} Markdown files checked, README commands {cmds[:2]}, .ci/run runs {ci!r}: "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
