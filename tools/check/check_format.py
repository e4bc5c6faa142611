#!/usr/bin/env python3
"""House rule: every C source and header of the project matches .clang-format.

usage: check_format.py CLANG_FORMAT SOURCE_ROOT

Runs `CLANG_FORMAT --dry-run --Werror` on every *.c and *.h of the project (project_files.py:
no build folders, no third_party/) and lists the files that differ. Exits 0 when all match,
1 otherwise, 77 (meson's "skipped") when CLANG_FORMAT is empty or cannot be run — except with
CI=true, where that is a failure too. The fix is
`clang-format -i FILE...` with the same clang-format (other major versions format a few
constructs differently, so meson looks for clang-format-14 first).
"""
import concurrent.futures
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from project_files import project_files  # noqa: E402


def check(clang_format, root, path):
    r = subprocess.run([clang_format, "--dry-run", "--Werror", path], cwd=root,
                       capture_output=True)
    return path, r.returncode


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    clang_format, root = sys.argv[1], os.path.abspath(sys.argv[2])
    # In CI (CI=true, as .ci/run runs) a missing formatter is a failure, not a skip: the rule
    # must hold on every landing. install-deps.sh installs clang-format-14.
    missing = 1 if os.environ.get("CI") == "true" else 77
    if not clang_format:
        print("check_format: no clang-format found: "
              + ("failing, since CI=true" if missing == 1 else "skipped"))
        return missing
    try:
        version = subprocess.run([clang_format, "--version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"check_format: cannot run {clang_format} ({e})")
        return missing
    print(f"check_format: {version.stdout.decode().strip()}")
    sources = [p for p in project_files(root) if p.endswith((".c", ".h"))]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda p: check(clang_format, root, p), sources))
    bad = sorted(p for p, rc in results if rc != 0)
    if not bad:
        print(f"check_format: all {len(sources)} C files match .clang-format")
        return 0
    print(f"check_format: {len(bad)} of {len(sources)} C files do not match .clang-format:")
    for p in bad:
        print(f"  {p}")
    print(f"fix: clang-format -i {' '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
