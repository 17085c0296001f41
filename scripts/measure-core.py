#!/usr/bin/env python3
"""Measures tabfit's baseline speed and memory (issue: core engine).

For each model (demo 8M, test 30M) x weights (file F16, q8_0) x threads (1, 2):
`tabfit bench` (pp64/tg64, mean of 3 after a warm-up) and the ledger's peak
per component from `tabfit run`. Prints a markdown table.
Usage: scripts/measure-core.py [build/tabfit] [../shared/models]
"""
import json, os, re, subprocess, sys

tabfit = sys.argv[1] if len(sys.argv) > 1 else "build/tabfit"
shared = sys.argv[2] if len(sys.argv) > 2 else "../shared/models"
models = [("demo-8m", "models/tabfit-demo-8m-f16.gguf"), ("test-30m", os.path.join(shared, "tabfit-test-30m-f16.gguf"))]
rows = []
for name, path in models:
    if not os.path.exists(path):
        print(f"skip {path}: missing", file=sys.stderr)
        continue
    for wt in ["", "q8_0"]:
        for t in [1, 2]:
            args = [tabfit, "bench", "-m", path, "-t", str(t), "-p", "64", "-n", "64", "-r", "3", "--json", "--no-bandwidth"]
            if wt:
                args += ["--weight-type", wt]
            b = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
            run = [tabfit, "run", "-m", path, "-t", str(t), "--temp", "0", "-n", "64", "-p", "It is a truth universally acknowledged"]
            if wt:
                run += ["--weight-type", wt]
            err = subprocess.run(run, check=True, capture_output=True, text=True).stderr
            comp = {}
            for line in err.splitlines():
                m = re.match(r"\s+(\S+)\s+(\S+ \S+)\s+(\S+ \S+)$", line)
                if m and m.group(1) not in ("component",):
                    comp[m.group(1)] = m.group(3)
            peak_rss = re.search(r"peak resident (\S+ \S+)", err).group(1)
            rows.append((name, wt or "f16", t, b["pp"]["tokens_per_second"], b["pp"]["sd"], b["tg"]["tokens_per_second"],
                         b["tg"]["sd"], comp, peak_rss))
print("| model | weights | threads | pp64 tok/s | tg64 tok/s | ledger peak by component | ledger total peak | process peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for name, wt, t, pp, ppsd, tg, tgsd, comp, rss in rows:
    parts = ", ".join(f"{k} {v}" for k, v in comp.items() if k != "total")
    print(f"| {name} | {wt} | {t} | {pp:.1f} ± {ppsd:.1f} | {tg:.1f} ± {tgsd:.1f} | {parts} | {comp.get('total', '?')} | {rss} |")
