#!/usr/bin/env python3
"""House rule: every doc link and every file a comment cites is a file in the project.

usage: check_refs.py SOURCE_ROOT

- Markdown: every link [text](target) of every *.md (outside code blocks and code spans)
  whose target is not a URL or a bare #anchor must name an existing file or folder, relative
  to the .md file (as a markdown viewer reads it).
- Comments of C, C headers, shaders (*.c *.h *.comp *.cl *.glsl) and meson files (meson.build,
  meson_options.txt): every path ending in .md that they cite (docs/ops.md, docs/vnir.md,
  ops.md, ../README.md, ...) must exist relative to the project root or to the citing
  file's folder.

Files are those of project_files.py (no build folders, no third_party/). Prints every broken
reference as FILE:LINE and exits 1 if there is one, else 0.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from project_files import project_files  # noqa: E402

C_LIKE = (".c", ".h", ".comp", ".cl", ".glsl")
MESON = ("meson.build", "meson_options.txt")

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MD_REF = re.compile(r"(?<![\w./-])((?:\.\.?/)*(?:[\w.-]+/)*[\w.-]+\.md)(?![\w-])")


def c_comments(text):
    """(line, comment text) of every /* */ and // comment, skipping string and char literals."""
    out, i, n, line = [], 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            line += text.count("\n", i, j + 1)
            i = j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append((line, text[i:j]))
            line += text.count("\n", i, j)
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append((line, text[i:j]))
            i = j
        else:
            i += 1
    return out


def hash_comments(text):
    """(line, comment) of every # comment of a meson file, skipping '...' strings."""
    out = []
    for no, raw in enumerate(text.split("\n"), 1):
        in_str, k = False, 0
        while k < len(raw):
            ch = raw[k]
            if ch == "\\" and in_str:
                k += 2
                continue
            if ch == "'":
                in_str = not in_str
            elif ch == "#" and not in_str:
                out.append((no, raw[k:]))
                break
            k += 1
    return out


def md_links(text):
    """(line, target) of every markdown link outside fenced code blocks and code spans."""
    out, fenced = [], False
    for no, raw in enumerate(text.split("\n"), 1):
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        plain = re.sub(r"`[^`]*`", "", raw)
        for m in LINK.finditer(plain):
            out.append((no, m.group(1)))
    return out


def in_project(root, path):
    """Whether path exists and lies inside root."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return os.path.exists(real) and os.path.commonpath([real, top]) == top


def exists(root, base_dir, target):
    """Whether target names a file in the project, from base_dir or from the root."""
    return any(in_project(root, os.path.join(root, start, target)) for start in (base_dir, "."))


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = os.path.abspath(sys.argv[1])
    broken = []
    n_links = n_refs = 0
    for rel in project_files(root):
        name = os.path.basename(rel)
        folder = os.path.dirname(rel)
        if rel.endswith(".md"):
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                text = f.read()
            for line, target in md_links(text):
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # a URL (https:, mailto:) or an anchor on the same page
                path = target.split("#", 1)[0]
                n_links += 1
                # A markdown link is relative to its own file only.
                if not in_project(root, os.path.join(root, folder, path)):
                    broken.append(f"{rel}:{line}: link to '{target}': no such file in the project")
            continue
        if rel.endswith(C_LIKE):
            comments = c_comments
        elif name in MESON:
            comments = hash_comments
        else:
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for line, comment in comments(text):
            for m in MD_REF.finditer(comment):
                ref = m.group(1)
                token_start = comment.rfind(" ", 0, m.start()) + 1
                if "://" in comment[token_start:m.end()]:
                    continue  # part of a URL
                n_refs += 1
                if not exists(root, folder, ref):
                    at = line + comment.count("\n", 0, m.start())
                    broken.append(f"{rel}:{at}: comment cites '{ref}': no such file in the "
                                  "project")
    if broken:
        print(f"check_refs: {len(broken)} broken references ({n_links} markdown links and "
              f"{n_refs} .md references in comments checked):")
        for b in broken:
            print(f"  {b}")
        return 1
    print(f"check_refs: {n_links} markdown links and {n_refs} .md references in comments, all "
          "files in the project")
    return 0


if __name__ == "__main__":
    sys.exit(main())
