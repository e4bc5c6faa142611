#!/usr/bin/env python3
"""The env_reader test: the library reads the environment in one place (docs/api.md, "Options").

Usage: check_getenv.py SRC_ROOT

Fails on any getenv/secure_getenv call in the library's sources (core, io, graph, memory,
runtime, backends, models) other than runtime/options.c, naming file and line. Tests, tools and
examples are programs, not the library, and may read what they like.
"""
import os
import re
import sys

from project_files import project_files

LIBRARY = ("core/", "io/", "graph/", "memory/", "runtime/", "backends/", "models/")
ALLOWED = {"runtime/options.c"}
CALL = re.compile(r"\b(secure_)?getenv\s*\(")


def main():
    root = sys.argv[1]
    bad = []
    for path in project_files(root):
        if not path.startswith(LIBRARY) or not path.endswith((".c", ".h")) or path in ALLOWED:
            continue
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if CALL.search(line):
                    bad.append("%s:%d: %s" % (path, n, line.strip()))
    for b in bad:
        print(b)
    if bad:
        print("%d getenv call(s) outside runtime/options.c: add the setting to its table and read it "
              "with vn_option (runtime) or host->option (backends)" % len(bad))
        return 1
    print("the library reads the environment only in runtime/options.c")
    return 0


if __name__ == "__main__":
    sys.exit(main())
