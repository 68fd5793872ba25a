"""The ONNX backend node tests (the 1404 onnx ships, ``_expanded`` variants left out) on
optc.runtime and on onnxruntime (graph optimizations off, 1 thread), side by side.

    python benchmarks/node_tests.py [--list]

Prints passed / failed / error per runtime, and with --list every case one runtime passes and
the other does not, with the reason (runtime/conformance.py runs and compares the cases).
"""

import argparse
import collections

from optc.runtime import conformance as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the cases the runtimes differ on")
    args = ap.parse_args()
    res = {"optc": {}, "onnxruntime": {}}
    for case in C.cases():
        for name, run in (("optc", C.optc_runner), ("onnxruntime", C.ort_runner)):
            res[name][case.name] = C.Outcome("skipped", "training mode") \
                if C.is_training(case.name) else C.outcome(case, run)
    print(f"{'runtime':<12} {'passed':>7} {'failed':>7} {'error':>7} {'skipped':>8}")
    for name, r in res.items():
        c = collections.Counter(o.status for o in r.values())
        print(f"{name:<12} {c['passed']:>7} {c['failed']:>7} {c['error']:>7} {c['skipped']:>8}")
    if args.list:
        for a, b in (("onnxruntime", "optc"), ("optc", "onnxruntime")):
            diff = [k for k in res[a] if res[a][k].status == "passed" and
                    res[b][k].status != "passed"]
            print(f"\n{a} passes, {b} does not: {len(diff)}")
            for k in diff:
                print(f"  {k}: {res[b][k].reason}")


if __name__ == "__main__":
    main()
