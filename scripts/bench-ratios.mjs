#!/usr/bin/env node
// Generation speed as a share of the machine's read ceiling, per host state.
//
// On a shared host the streaming-read ceiling moves (this project's VMs: ~45 <-> ~80
// GB/s at 2 threads, sometimes within seconds), so one ratio says little. This runs
// `tabfit bench -p 0 -n N -r R --json` on each model, round after round; bench probes
// the ceiling before the model loads and after every tg run, and reports each run's
// bytes/s against the higher of the two probes around it. Runs are then grouped by
// those probes: "high" where both were >= --high GB/s, "low" where both were <= --low,
// "mixed" otherwise (the host moved; such runs say little either way).
//
//   node scripts/bench-ratios.mjs --tabfit build/tabfit --threads 2 --rounds 3 \
//        --models /tmp/bvl/tinyllama-1.1b-{tf_q2,q4_0}.gguf [--jsonl-out FILE]
// A/B: --tabfit A,B[,...] runs every binary on every model in each round, in turn,
// so each gets its share of every host state; a binary may carry one environment
// setting, e.g. --tabfit /tmp/base,build/tabfit,build/tabfit:SOME_VAR=1.
// Models: any GGUF or package, e.g. from `tabfit synth --shape tinyllama-1.1b --type T -o FILE`.
import { spawnSync } from "node:child_process";
import { appendFileSync } from "node:fs";
import path from "node:path";

const a = { tabfit: "build/tabfit", threads: 2, rounds: 3, n: 32, reps: 8, high: 70, low: 56, models: [], out: null };
for (let i = 2; i < process.argv.length; ++i) {
  const k = process.argv[i];
  const v = () => process.argv[++i];
  if (k === "--tabfit") a.tabfit = v();
  else if (k === "--threads") a.threads = Number(v());
  else if (k === "--rounds") a.rounds = Number(v());
  else if (k === "--n") a.n = Number(v());
  else if (k === "--reps") a.reps = Number(v());
  else if (k === "--high") a.high = Number(v());
  else if (k === "--low") a.low = Number(v());
  else if (k === "--jsonl-out") a.out = v();
  else if (k === "--models") while (i + 1 < process.argv.length && !process.argv[i + 1].startsWith("--")) a.models.push(v());
  else throw new Error(`unknown argument ${k}`);
}
if (!a.models.length) throw new Error("--models FILE... is required");

const binaries = a.tabfit.split(",").map((spec) => {
  const [bin, setting] = spec.split(/:(.*)/s);
  const env = { ...process.env };
  if (setting) {
    const eq = setting.indexOf("=");
    if (eq <= 0) throw new Error(`--tabfit ${spec}: expected BINARY:VAR=VALUE`);
    env[setting.slice(0, eq)] = setting.slice(eq + 1);
  }
  return { spec, bin, env };
});
const groups = { high: {}, low: {}, mixed: {} };
for (let r = 0; r < a.rounds; ++r) {
  for (const m of a.models) for (const b of binaries) {
    const args = ["bench", "-m", m, "-t", String(a.threads), "-p", "0", "-n", String(a.n), "-r", String(a.reps), "--json"];
    const p = spawnSync(b.bin, args, { encoding: "utf8", maxBuffer: 1 << 26, env: b.env });
    if (p.status !== 0) throw new Error(`${b.spec} ${args.join(" ")} failed:\n${p.stdout}${p.stderr}`);
    const j = JSON.parse(p.stdout);
    const probes = j.n_threads_ceiling_probes_bytes_per_second ?? [];
    const runs = j.bandwidth_ratio_per_tg_run ?? [];
    const name = binaries.length > 1 ? `${path.basename(m)} (${b.spec})` : path.basename(m);
    if (a.out) {
      appendFileSync(a.out, JSON.stringify({ model: path.basename(m), tabfit: b.spec, threads: a.threads, time: new Date().toISOString(),
                                             tg: j.tg.samples, probes, runs }) + "\n");
    }
    runs.forEach((ratio, i) => {
      const lo = Math.min(probes[i], probes[i + 1]) / 1e9, hi = Math.max(probes[i], probes[i + 1]) / 1e9;
      const g = lo >= a.high ? "high" : hi <= a.low ? "low" : "mixed";
      (groups[g][name] ??= []).push(ratio);
    });
    console.error(`round ${r + 1}, ${name}: tg ${j.tg.tokens_per_second.toFixed(2)} tok/s, ` +
                  `per-run ratios ${runs.map((x) => (100 * x).toFixed(0) + "%").join(" ")}`);
  }
}
const pct = (x) => `${(100 * x).toFixed(0)} %`;
console.log(`| host state (${a.threads} thread${a.threads > 1 ? "s" : ""}) | model | runs | median | middle half | min – max |`);
console.log("|---|---|---:|---:|---|---|");
for (const [g, label] of [["high", `both probes >= ${a.high} GB/s`], ["low", `both <= ${a.low} GB/s`], ["mixed", "moved"]]) {
  for (const [name, v] of Object.entries(groups[g])) {
    v.sort((x, y) => x - y);
    const med = v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    console.log(`| ${g} (${label}) | ${name} | ${v.length} | ${pct(med)} | ${pct(v[Math.floor(v.length / 4)])} – ` +
                `${pct(v[Math.floor((3 * v.length) / 4)])} | ${pct(v[0])} – ${pct(v[v.length - 1])} |`);
  }
}
