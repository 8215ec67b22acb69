#!/usr/bin/env python3
"""Runs Cloister benchmarks of this tree and of a reference revision side by side.

    scripts/bench-against.py REV BENCH [BENCH...]      # e.g. HEAD~5 federation replicas

REV may also be a directory holding a checkout of the reference (used as it is).

Builds each benchmark at REV (in a temporary git worktree) and here, then runs them in turn on
the same machine (reference, this tree, reference, this tree: ROUNDS=2 by default), and prints,
for every result line (`LABEL: NUMBER …`), the median of each side and their ratio
(this tree / reference). Benchmarks live in crates/cloister-services/benches and take their
usual environment (BENCH_SECONDS, BENCH_CONCURRENCY, …). Set CARGO_TARGET_DIR_REF to keep the
reference's build between runs.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True,
                      capture_output=True, text=True).stdout.strip()
RESULT = re.compile(r"^(?P<label>[^:]+): (?P<value>[0-9]+(?:\.[0-9]+)?)")


def build(tree, bench, target_dir):
    """The path of `bench`'s executable, built in `tree`."""
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir) if target_dir else os.environ
    out = subprocess.run(
        ["cargo", "bench", "-p", "cloister-services", "--bench", bench, "--no-run",
         "--message-format=json"],
        cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and "bench" in msg["target"]["kind"]:
            return msg["executable"]
    sys.exit(f"no executable for bench {bench} in {tree}")


def run(executable, tree):
    """Result lines of one run: label → number."""
    out = subprocess.run([executable, "--bench"], check=True, capture_output=True, text=True,
                         cwd=os.path.join(tree, "crates", "cloister-services")).stdout
    print(out, end="", flush=True)
    return {m["label"]: float(m["value"]) for m in map(RESULT.match, out.splitlines()) if m}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rev, benches = sys.argv[1], sys.argv[2:]
    rounds = int(os.environ.get("ROUNDS", "2"))
    with tempfile.TemporaryDirectory() as tmp:
        given = os.path.isdir(rev)
        ref_tree = rev if given else os.path.join(tmp, "reference")
        if not given:
            subprocess.run(["git", "-C", ROOT, "worktree", "add", "-q", "--detach", ref_tree,
                            rev], check=True)
        try:
            for bench in benches:
                ref_target = os.environ.get("CARGO_TARGET_DIR_REF") or os.path.join(tmp, "target")
                sides = {"reference": (build(ref_tree, bench, ref_target), ref_tree),
                         "this tree": (build(ROOT, bench, None), ROOT)}
                results = {side: [] for side in sides}
                for _ in range(rounds):
                    for side, (exe, tree) in sides.items():
                        print(f"--- {bench}, {side}", flush=True)
                        results[side].append(run(exe, tree))
                print(f"=== {bench}: median of {rounds} runs each, {rev} vs this tree")
                for label in results["reference"][0]:
                    ref = statistics.median(r[label] for r in results["reference"] if label in r)
                    new = [r[label] for r in results["this tree"] if label in r]
                    if not new:
                        continue
                    new = statistics.median(new)
                    ratio = new / ref if ref else float("nan")
                    print(f"{label}: {ref:g} → {new:g} ({ratio:.2f}x)")
        finally:
            if not given:
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", ref_tree],
                               check=False)


if __name__ == "__main__":
    main()
