#!/usr/bin/env node
// Progressive loading, streaming and speculative-decoding benchmarks (issue 15).
// Every figure is measured here, by build/tabfit, in this run; the report goes to
// stdout as markdown (paste it into docs/measurements.md with the machine).
//
//   node bench/progressive.mjs [--synth DIR] [--only ttft,big,spec,matrix] [--quick]
//
// Sections:
//   ttft    1.1B shape (Q4_0), 256-token prompt: time to first token, progressive
//           (Load returns after the priority components, prefill overlaps the rest)
//           vs load-then-prefill (--no-background), from a cold file (page cache
//           dropped, needs root) and over HTTP through a loopback throttled to a
//           network-like rate (tc tbf, needs root; skipped otherwise).
//   big     7B shape (Q4_0 and TF_Q4) under --budget 2GiB and 13B (Q4_0) under 4GiB:
//           tokens/s, peak RSS, bytes streamed per token, vs --naive-stream, and the
//           storage read ceiling `tabfit bench` measured in the same run.
//   spec    8M drafting 30M: acceptance and tokens/s, resident and streamed.
//   matrix  budgets x models x context lengths: peak ledger and peak RSS vs budget.
// Synthesized models (tabfit synth) are written to --synth (default /work/synth or
// $TMPDIR/tabfit-synth) once and reused.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const tabfit = path.join(root, 'build', 'tabfit');
const shared = process.env.TABFIT_SHARED_DIR || path.join(root, '..', 'shared');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const synthDir = opt('--synth', fs.existsSync('/work') ? '/work/synth' : path.join(os.tmpdir(), 'tabfit-synth'));
const only = new Set((opt('--only', 'ttft,big,spec,matrix')).split(','));
const quick = args.includes('--quick');
const isRoot = process.getuid && process.getuid() === 0;
fs.mkdirSync(synthDir, { recursive: true });

const log = (...a) => console.error('[bench]', ...a);
const out = (s = '') => console.log(s);
const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';
const gib = (b) => (b / 1073741824).toFixed(2) + ' GiB';

function run(argv, { allowFail = false } = {}) {
  log(['tabfit', ...argv].join(' '));
  try {
    return execFileSync(tabfit, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  } catch (e) {
    if (allowFail) return null;
    throw new Error(`tabfit ${argv.join(' ')} failed:\n${e.stderr || e.message}`);
  }
}
// `tabfit run` prints the text on stdout and the figures on stderr: both.
function runWithStderr(argv) {
  log(['tabfit', ...argv].join(' '));
  const r = spawnSync(tabfit, argv, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`tabfit ${argv.join(' ')} failed:\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

const benchJson = (argv) => JSON.parse(run(['bench', '--json', ...argv]));

function synth(shape, type) {
  const f = path.join(synthDir, `${shape}-${type}.gguf`);
  if (!fs.existsSync(f)) run(['synth', '--shape', shape, '--type', type, '-o', f, '-q']);
  return f;
}

function dropCaches() {
  if (!isRoot) return false;
  try {
    execFileSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

function machine() {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? os.cpus()[0]?.model;
  return `${cpu}, ${os.cpus().length} cores, ${gib(os.totalmem())} RAM, ${os.release()}`;
}

out(`# Progressive loading / streaming benchmark (${new Date().toISOString().slice(0, 10)})`);
out();
out(`machine: ${machine()}`);
out(`command: node bench/progressive.mjs ${args.join(' ')}`);
out();

// ---------------------------------------------------------------- TTFT
async function withThrottledServer(file, rate, fn) {
  const port = 18000 + Math.floor(Math.random() * 1000);
  const dir = path.dirname(file);
  const srv = spawn(tabfit, ['serve', '--port', String(port), '--models', dir, '-q'], { stdio: 'ignore' });
  let shaped = false;
  try {
    // Wait for the server (its port answering), then shape the loopback.
    for (let i = 0; i < 100; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/api/models`);
        if (r.ok) break;
      } catch {}
      await new Promise((r) => setTimeout(r, 100));
    }
    if (rate) {
      execFileSync('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', rate, 'burst', '256kb', 'latency', '50ms']);
      shaped = true;
    }
    return await fn(`http://127.0.0.1:${port}/models/${path.basename(file)}`);
  } finally {
    if (shaped) execFileSync('tc', ['qdisc', 'del', 'dev', 'lo', 'root']);
    srv.kill();
  }
}

function ttftRow(label, j) {
  return `| ${label} | ${j.load_seconds.toFixed(2)} | ${j.loaded_seconds.toFixed(2)} | ${j.ttft_seconds.toFixed(2)} |`;
}

if (only.has('ttft')) {
  const f = synth('tinyllama-1.1b', 'q4_0');
  const size = fs.statSync(f).size;
  const base = ['-m', f, '-p', quick ? '64' : '256', '-n', '1', '-r', '1', '--no-bandwidth', '-t', String(os.cpus().length)];
  out(`## TTFT: ${path.basename(f)} (${mib(size)}), ${quick ? 64 : 256}-token prompt`);
  out();
  out('| source, mode | Load returned (s) | last component arrived (s) | TTFT (s) |');
  out('|---|---|---|---|');
  const results = {};
  const cases = [['warm file', null, false]];
  if (isRoot) cases.unshift(['cold file', null, true]);
  const rate = opt('--rate', '800mbit');
  let tcOk = false;
  if (isRoot) {
    try {
      execFileSync('tc', ['qdisc', 'show', 'dev', 'lo']);
      tcOk = true;
    } catch {}
  }
  for (const [label, , cold] of cases) {
    for (const mode of ['progressive', 'load-then-prefill']) {
      if (cold && !dropCaches()) continue;
      const j = benchJson([...base, ...(mode === 'progressive' ? [] : ['--no-background'])]);
      results[`${label}/${mode}`] = j;
      out(ttftRow(`${label}, ${mode}`, j));
    }
  }
  if (tcOk) {
    await withThrottledServer(f, rate, async (url) => {
      const modes = { progressive: [], 'load-then-prefill': ['--no-background'],
                      'progressive, --priority embeddings,layers.0 (lm_head in forward order)': ['--priority', 'embeddings,layers.0'] };
      for (const [mode, extra] of Object.entries(modes)) {
        const j = benchJson(['-m', url, ...base.slice(2), ...extra]);
        results[`http/${mode}`] = j;
        out(ttftRow(`HTTP at ${rate} (tc tbf on lo), ${mode}`, j));
      }
    });
  }
  out();
  for (const src of ['cold file', 'warm file', 'http']) {
    const p = results[`${src}/progressive`], b = results[`${src}/load-then-prefill`];
    if (!p || !b) continue;
    const load = b.loaded_seconds, prefill = b.ttft_seconds - b.load_seconds;
    const goal = 1.1 * Math.max(load, prefill);
    out(`- ${src}: load ${load.toFixed(2)} s, prefill ${prefill.toFixed(2)} s (from the load-then-prefill run); ` +
        `progressive TTFT ${p.ttft_seconds.toFixed(2)} s vs 1.1 x max = ${goal.toFixed(2)} s: ` +
        `${p.ttft_seconds <= goal ? 'met' : 'NOT met'}; load-then-prefill TTFT ${b.ttft_seconds.toFixed(2)} s`);
  }
  out();
}

// ---------------------------------------------------------------- larger than the budget
if (only.has('big')) {
  out('## Larger than the budget');
  out();
  out('| model | budget | mode | tg tokens/s | streamed / token | storage read ceiling | bound tokens/s | tg / bound | ledger peak | peak RSS | residency |');
  out('|---|---|---|---|---|---|---|---|---|---|---|');
  const cases = [
    ['llama2-7b', 'q4_0', '2GiB'],
    ['llama2-7b', 'tf_q4', '2GiB'],
    ['llama2-13b', 'q4_0', '4GiB'],
  ];
  for (const [shape, type, budget] of quick ? cases.slice(0, 1) : cases) {
    const f = synth(shape, type);
    const rows = {};
    const flags = { resident: [], streamed: [], 'streamed, --mmap-stream': ['--mmap-stream'], naive: ['--naive-stream'] };
    for (const mode of Object.keys(flags)) {
      const j = benchJson(['-m', f, ...(mode === 'resident' ? [] : ['--budget', budget]), '-c', '256', '-p', '0',
                           '-n', quick ? '2' : '4', '-r', '1', '--no-bandwidth', ...flags[mode]]);
      rows[mode] = j;
      const s = j.streaming || {};
      out(`| ${path.basename(f)} (${mib(fs.statSync(f).size)}) | ${budget} | ${mode} | ${j.tg.tokens_per_second.toFixed(3)} | ` +
          `${mib(s.bytes_per_tg_token || 0)} | ${((s.storage_read_bytes_per_second || 0) / 1e9).toFixed(2)} GB/s | ` +
          `${(s.tokens_per_second_bound || 0).toFixed(3)} | ${((s.ratio_to_bound || 0) * 100).toFixed(0)}% | ` +
          `${mib(j.memory.ledger_peak_bytes)} | ${mib(j.memory.rss_peak_bytes)} | ${j.residency} |`);
    }
    const xm = rows['streamed, --mmap-stream'].tg.tokens_per_second / rows.naive.tg.tokens_per_second;
    out(`| | | streamed (mmap) / naive | ${xm.toFixed(2)}x | | | | | | | |`);
    const x = rows.streamed.tg.tokens_per_second / rows.naive.tg.tokens_per_second;
    const res = rows.resident.tg.tokens_per_second;
    const bound = Math.min(res, rows.streamed.streaming?.tokens_per_second_bound || res);
    out(`| | | streamed / naive | ${x.toFixed(2)}x | | | | | | | |`);
    out(`| | | streamed / min(read bound, resident) | ${(rows.streamed.tg.tokens_per_second / bound * 100).toFixed(0)}% | | | | | | | |`);
  }
  out();
}

// ---------------------------------------------------------------- speculative
if (only.has('spec')) {
  const big = path.join(shared, 'models', 'tabfit-test-30m-f16.gguf');
  const draft = path.join(root, 'models', 'tabfit-demo-8m-f16.gguf');
  if (fs.existsSync(big)) {
    out('## Speculative decoding: 8M drafting 30M (greedy, 128 tokens, 4 draft tokens)');
    out();
    out('| residency | draft | tokens/s | accepted | tokens per verifying pass | same text |');
    out('|---|---|---|---|---|---|');
    const prompt = 'It is a truth universally acknowledged';
    for (const budget of [null, '48MiB']) {
      let plainText = null;
      for (const withDraft of [false, true]) {
        const argv = ['run', '-m', big, '--temp', '0', '-p', prompt, '-n', '128', '-t', String(os.cpus().length),
                      ...(budget ? ['--budget', budget] : []), ...(withDraft ? ['--draft', draft] : [])];
        const r = runWithStderr(argv);
        const tps = Number(r.stderr.match(/generation:.*= *([\d.]+) tokens\/s/)?.[1] ?? 0);
        const sp = r.stderr.match(/speculative: (\d+) of (\d+) draft tokens accepted \((\d+) %\), (\d+) verifying passes, ([\d.]+) tokens/);
        if (!withDraft) plainText = r.stdout;
        out(`| ${budget ? 'streamed, --budget ' + budget : 'resident'} | ${withDraft ? '8M, k=4' : 'none'} | ${tps.toFixed(1)} | ` +
            `${sp ? `${sp[1]}/${sp[2]} (${sp[3]} %)` : '-'} | ${sp ? sp[5] : '1'} | ${withDraft ? (r.stdout === plainText ? 'yes' : 'NO') : '-'} |`);
      }
    }
    out();
  } else {
    out(`(speculative: ${big} absent, skipped)`);
  }
}

// ---------------------------------------------------------------- budget matrix
if (only.has('matrix')) {
  out('## Budget never exceeded: peak ledger and peak RSS vs budget');
  out();
  out('| model | context | budget | residency | ledger peak | peak RSS | ledger ≤ budget | RSS - budget |');
  out('|---|---|---|---|---|---|---|---|');
  const models = [path.join(root, 'models', 'tabfit-demo-8m-f16.gguf')];
  const m30 = path.join(shared, 'models', 'tabfit-test-30m-f16.gguf');
  if (fs.existsSync(m30)) models.push(m30);
  if (!quick) models.push(synth('tinyllama-1.1b', 'q4_0'));
  const budgetsFor = (size) => [1.25, 0.75, 0.5].map((x) => Math.round((size * x) / 1048576));
  for (const m of models) {
    const size = fs.statSync(m).size;
    for (const ctx of [256, 512]) {
      for (const b of budgetsFor(size)) {
        const budget = `${b}MiB`;
        const r = run(['bench', '--json', '-m', m, '--budget', budget, '-c', String(ctx), '-p', '32', '-n', '8', '-r', '1',
                       '--no-bandwidth'], { allowFail: true });
        if (!r) {
          out(`| ${path.basename(m)} | ${ctx} | ${budget} | refused at load (below the streaming minimum) | | | | |`);
          continue;
        }
        const j = JSON.parse(r);
        const bb = b * 1048576;
        out(`| ${path.basename(m)} | ${ctx} | ${budget} | ${j.residency} | ${mib(j.memory.ledger_peak_bytes)} | ` +
            `${mib(j.memory.rss_peak_bytes)} | ${j.memory.ledger_peak_bytes <= bb ? 'yes' : 'NO'} | ` +
            `${mib(j.memory.rss_peak_bytes - bb)} |`);
      }
    }
  }
  out();
}
