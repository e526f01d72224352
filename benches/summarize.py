#!/usr/bin/env python3
"""Turn criterion's results into the tables of docs/PERFORMANCE.md.

  summarize.py snapshot OUT.json [ID-PREFIX...]   save the medians of the last `cargo bench`
  summarize.py table RUN.json [RUN.json...]       markdown table: median of the runs' medians,
                                                  and the lowest/highest run, per benchmark

Reads target/criterion/**/new/{benchmark,estimates}.json (criterion 0.5). Throughput in
Bytes per iteration is shown as Gbit/s, in Elements as millions per second (Mpps for packets).
"""
import json
import os
import statistics
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


def snapshot(out, prefixes):
    results = {}
    for dirpath, _, files in os.walk(ROOT):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        full_id = bench["full_id"]
        if prefixes and not any(full_id.startswith(p) for p in prefixes):
            continue
        results[full_id] = {"median_ns": est["median"]["point_estimate"], "throughput": bench.get("throughput")}
    with open(out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(f"{len(results)} benchmarks saved to {out}")


def rate(ns, throughput):
    if not throughput:
        return f"{1e9 / ns:,.0f} /s"
    if "Bytes" in throughput:
        return f"{throughput['Bytes'] * 8 / ns:.2f} Gbit/s"
    n = throughput.get("Elements", 1)
    per_s = n * 1e9 / ns
    return f"{per_s / 1e6:.2f} M/s" if per_s >= 1e5 else f"{per_s:,.0f} /s"


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def table(runs):
    data = []
    for path in runs:
        with open(path) as f:
            data.append(json.load(f))
    ids = sorted({i for d in data for i in d})
    print(f"| benchmark | median | rate | runs (low – high) |")
    print("|---|---:|---:|---|")
    for i in ids:
        vals = [d[i]["median_ns"] for d in data if i in d]
        tp = next(d[i]["throughput"] for d in data if i in d)
        med = statistics.median(vals)
        spread = f"{len(vals)} ({fmt_ns(min(vals))} – {fmt_ns(max(vals))})"
        print(f"| `{i}` | {fmt_ns(med)} | {rate(med, tp)} | {spread} |")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "snapshot":
        snapshot(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        sys.exit(__doc__)
