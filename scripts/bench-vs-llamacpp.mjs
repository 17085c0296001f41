#!/usr/bin/env node
// Side-by-side generation speed: tabfit vs llama.cpp (prebuilt, through
// node-llama-cpp 3.21.1) on random-weight models of TinyLlama-1.1B's shape.
//
// Setup (once; this script installs nothing):
//   (cd bench/node && npm ci)            # node-llama-cpp 3.21.1, pinned in package.json
//   cmake --build build --target tabfit  # build/tabfit
// Run:
//   node scripts/bench-vs-llamacpp.mjs [--tabfit build/tabfit] [--threads 1,2]
//        [--types f16,q8_0,q4_0,tf_q4,q2_k,tf_q2] [--rounds 2] [--n 64]
//        [--shape tinyllama-1.1b] [--tmp DIR] [--keep] [--json-out FILE]
//
// For every model and thread count it measures, in the same run, llama.cpp's
// and tabfit's generation tokens/s (n tokens, greedy), alternating which goes
// first in each round; each round loads the model afresh and frees it before
// the other engine runs, so both never hold memory at once. llama.cpp's rate is
// (n-1) decode steps over the time between the first and the last generated
// token (prompt excluded); tabfit's is `tabfit bench -p 0 -n N --json` (n
// single-token steps from an empty context, after a warm-up). tabfit's own
// formats (tf_q4, tf_q2) run in tabfit only and GGML Q2_K (random valid blocks
// from `tabfit synth`) in llama.cpp only; their rows' ratio column compares with
// the llama.cpp row of the same bits (tf_q2 vs q2_k, tf_q4 vs q4_0, tf_q8 vs q8_0)
// at the same thread count, measured in the same run.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function parseArgs(argv) {
  const a = {
    tabfit: process.env.TABFIT_BIN || path.join(repo, "build", "tabfit"),
    threads: [1, 2],
    types: ["f16", "q8_0", "q4_0", "tf_q4", "q2_k", "tf_q2"],
    rounds: 2,
    n: 64,
    shape: "tinyllama-1.1b",
    tmp: null,
    keep: false,
    jsonOut: null,
    seed: 1,
  };
  for (let i = 2; i < argv.length; ++i) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === "--tabfit") a.tabfit = path.resolve(v());
    else if (k === "--threads") a.threads = v().split(",").map(Number);
    else if (k === "--types") a.types = v().split(",").map((s) => s.trim().toLowerCase());
    else if (k === "--rounds") a.rounds = Number(v());
    else if (k === "--n") a.n = Number(v());
    else if (k === "--shape") a.shape = v();
    else if (k === "--tmp") a.tmp = path.resolve(v());
    else if (k === "--keep") a.keep = true;
    else if (k === "--json-out") a.jsonOut = path.resolve(v());
    else if (k === "--seed") a.seed = Number(v());
    else if (k === "-h" || k === "--help") {
      console.log(fileURLToPath(import.meta.url) + "\n" + "see the comment at the top of this file");
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  if (!a.threads.every((t) => Number.isInteger(t) && t > 0)) throw new Error("--threads: positive integers");
  if (!(a.rounds >= 1 && a.n >= 2)) throw new Error("--rounds >= 1 and --n >= 2");
  return a;
}

const LLAMA_TYPES = new Set(["f32", "f16", "q8_0", "q4_0", "q2_k"]);  // GGML types llama.cpp reads
const TABFIT_SKIP = new Set(["q2_k"]);  // read-only in tabfit (no mat-mul kernels): llama.cpp only
// tabfit-only formats -> the llama.cpp type of about the same bits per weight.
const COUNTERPART = { tf_q2: "q2_k", tf_q4: "q4_0", tf_q8: "q8_0" };

function mean(xs) {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}
function sd(xs) {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}
function fmt(x, d = 2) {
  return x == null || Number.isNaN(x) ? "-" : x.toFixed(d);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

async function loadNodeLlamaCpp() {
  const entry = path.join(repo, "bench", "node", "node_modules", "node-llama-cpp", "dist", "index.js");
  if (!existsSync(entry)) {
    throw new Error(`node-llama-cpp is not installed: run (cd ${path.join(repo, "bench", "node")} && npm ci)`);
  }
  return import(pathToFileURL(entry).href);
}

// One llama.cpp measurement: load, generate n tokens greedily, free.
async function llamaOnce(nlc, llama, modelPath, threads, n) {
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  try {
    const context = await model.createContext({ contextSize: 256, batchSize: 64, threads, sequences: 1 });
    try {
      const seq = context.getSequence();
      const prompt = model.tokenize("The quick brown fox");
      const run1 = async (n) => {
        await seq.clearHistory();
        let count = 0;
        let tFirst = 0;
        let tLast = 0;
        for await (const _tok of seq.evaluate(prompt, { temperature: 0 })) {
          const t = performance.now();
          if (count === 0) tFirst = t;
          tLast = t;
          if (++count >= n) break;
        }
        return ((count - 1) * 1000) / (tLast - tFirst);
      };
      await run1(8);  // warm-up
      return await run1(n);
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

function tabfitOnce(bin, modelPath, threads, n) {
  const out = run(bin, ["bench", "-m", modelPath, "-t", String(threads), "-p", "0", "-n", String(n), "-r", "1",
                        "--json", "--no-bandwidth"]);
  const j = JSON.parse(out);
  return { tps: j.tg.tokens_per_second, bytesPerToken: j.weight_bytes_per_token, rssPeak: j.memory.rss_peak_bytes,
           ledgerPeak: j.memory.ledger_peak_bytes };
}

async function main() {
  const a = parseArgs(process.argv);
  if (!existsSync(a.tabfit)) throw new Error(`${a.tabfit} not found: build it (cmake --build build --target tabfit)`);
  const nlc = await loadNodeLlamaCpp();
  const llama = await nlc.getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: "error" });
  const tmp = a.tmp ?? mkdtempSync(path.join(os.tmpdir(), "tabfit-vs-llamacpp-"));
  mkdirSync(tmp, { recursive: true });
  const load0 = os.loadavg();
  console.error(`models in ${tmp}; machine: ${os.cpus()[0]?.model} x${os.cpus().length}, load ${load0.map((x) => x.toFixed(1)).join(" ")}`);

  // Machine read bandwidth (tabfit's measurement) for context.
  let bandwidth = null;
  const rows = [];
  try {
    for (const type of a.types) {
      const file = path.join(tmp, `${a.shape}-${type}.gguf`);
      if (!existsSync(file)) {
        console.error(`synthesizing ${path.basename(file)} ...`);
        try {
          run(a.tabfit, ["synth", "--shape", a.shape, "--type", type, "-o", file, "--seed", String(a.seed), "-q"]);
        } catch (e) {
          console.error(`  skipped ${type}: ${e.message.split("\n").slice(-2).join(" ")}`);
          continue;
        }
      }
      const size = statSync(file).size;
      for (const threads of a.threads) {
        const cell = { shape: a.shape, type, threads, file_bytes: size, llama: [], tabfit: [], tabfit_bytes_per_token: null };
        for (let r = 0; r < a.rounds; ++r) {
          const order = (r + threads) % 2 === 0 ? ["llama", "tabfit"] : ["tabfit", "llama"];
          for (const who of order) {
            if (who === "llama") {
              if (!LLAMA_TYPES.has(type)) continue;
              const tps = await llamaOnce(nlc, llama, file, threads, a.n);
              cell.llama.push(tps);
              console.error(`  ${type} t${threads} round ${r + 1}: llama.cpp ${tps.toFixed(2)} tok/s`);
            } else {
              if (TABFIT_SKIP.has(type)) continue;
              const t = tabfitOnce(a.tabfit, file, threads, a.n);
              cell.tabfit.push(t.tps);
              cell.tabfit_bytes_per_token = t.bytesPerToken;
              cell.tabfit_rss_peak = t.rssPeak;
              console.error(`  ${type} t${threads} round ${r + 1}: tabfit    ${t.tps.toFixed(2)} tok/s`);
            }
          }
        }
        cell.llama_tps = cell.llama.length ? mean(cell.llama) : null;
        cell.llama_sd = cell.llama.length ? sd(cell.llama) : null;
        cell.tabfit_tps = cell.tabfit.length ? mean(cell.tabfit) : null;
        cell.tabfit_sd = cell.tabfit.length ? sd(cell.tabfit) : null;
        cell.ratio = cell.llama_tps && cell.tabfit_tps ? cell.tabfit_tps / cell.llama_tps : null;
        rows.push(cell);
      }
    }
    for (const c of rows) {
      const ref = COUNTERPART[c.type] && rows.find((o) => o.type === COUNTERPART[c.type] && o.threads === c.threads);
      if (c.ratio == null && ref?.llama_tps && c.tabfit_tps) {
        c.ratio = c.tabfit_tps / ref.llama_tps;
        c.ratio_vs = ref.type;
      }
    }
    // tabfit's bandwidth measurement once, at the largest thread count.
    const maxT = Math.max(...a.threads);
    const runnable = rows.filter((c) => !TABFIT_SKIP.has(c.type));
    const small = runnable.length ? path.join(tmp, `${a.shape}-${runnable[runnable.length - 1].type}.gguf`) : null;
    if (small) {
      const j = JSON.parse(run(a.tabfit, ["bench", "-m", small, "-t", String(maxT), "-p", "0", "-n", "2", "-r", "1", "--json"]));
      bandwidth = j.machine_read_bandwidth;
    }
  } finally {
    if (!a.keep && !a.tmp) rmSync(tmp, { recursive: true, force: true });
  }

  const load1 = os.loadavg();
  const header = `| model (${a.shape}) | threads | llama.cpp tok/s | tabfit tok/s | tabfit / llama.cpp | tabfit GB/s eff. |`;
  console.log(header);
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const c of rows) {
    const eff = c.tabfit_bytes_per_token ? (c.tabfit_bytes_per_token * c.tabfit_tps) / 1e9 : null;
    console.log(`| ${c.type.toUpperCase()} (${(c.file_bytes / 2 ** 30).toFixed(2)} GiB) | ${c.threads} | ` +
      `${c.llama_tps == null ? "n/a" : `${fmt(c.llama_tps)} ± ${fmt(c.llama_sd)}`} | ` +
      `${c.tabfit_tps == null ? "n/a" : `${fmt(c.tabfit_tps)} ± ${fmt(c.tabfit_sd)}`} | ` +
      `${c.ratio == null ? "-" : fmt(c.ratio, 3) + (c.ratio_vs ? ` (vs ${c.ratio_vs.toUpperCase()})` : "")} | ${fmt(eff)} |`);
  }
  if (bandwidth) {
    console.log(`\nmachine read bandwidth (tabfit bench): 1 thread ${(bandwidth.one_thread_bytes_per_second / 1e9).toFixed(2)} GB/s, ` +
      `${bandwidth.threads} threads ${(bandwidth.n_threads_bytes_per_second / 1e9).toFixed(2)} GB/s`);
  }
  console.log(`load average before ${load0.map((x) => x.toFixed(1)).join(" ")}, after ${load1.map((x) => x.toFixed(1)).join(" ")} ` +
    `(${os.cpus().length} CPUs; a shared machine makes these numbers noisy)`);
  const result = {
    tool: "scripts/bench-vs-llamacpp.mjs",
    date: new Date().toISOString(),
    node_llama_cpp: "3.21.1",
    llama_cpp_release: llama.llamaCppRelease ?? null,
    machine: { cpu: os.cpus()[0]?.model, cpus: os.cpus().length, loadavg_before: load0, loadavg_after: load1 },
    settings: { shape: a.shape, n: a.n, rounds: a.rounds, threads: a.threads, seed: a.seed },
    bandwidth,
    rows,
  };
  console.log("\n" + JSON.stringify(result, null, 1));
  if (a.jsonOut) writeFileSync(a.jsonOut, JSON.stringify(result, null, 1) + "\n");
  await llama.dispose?.();
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
