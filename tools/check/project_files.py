"""The project's own files, for the house-rule checks in this folder.

In a git checkout: the tracked files plus new ones git does not ignore (so build folders and
other ignored output never count). Outside git (a release tarball): every file under the
root except hidden folders and build*/ folders. third_party/ is left out either way: what is
there is packaging or vendored code, not the project's own sources.
"""
import os
import subprocess

SKIP_TOP = ("third_party",)


def project_files(root):
    """Paths relative to root, sorted, '/'-separated."""
    files = None
    if os.path.isdir(os.path.join(root, ".git")) or os.path.isfile(os.path.join(root, ".git")):
        try:
            out = subprocess.run(
                ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                check=True, capture_output=True).stdout
            files = [p for p in out.decode().split("\0") if p]
        except (OSError, subprocess.CalledProcessError):
            files = None
    if files is None:
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            dirnames[:] = [d for d in dirnames
                           if not d.startswith(".") and not (rel == "." and d.startswith("build"))]
            for f in filenames:
                files.append(os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/"))
    keep = []
    for p in sorted(set(files)):
        if p.split("/", 1)[0] in SKIP_TOP:
            continue
        if os.path.isfile(os.path.join(root, p)):  # deleted in the work tree: not a file now
            keep.append(p)
    return keep
