#!/usr/bin/env node
// End-to-end check of the demo page through `tabfit serve` and headless Chromium:
//   node web/demo/e2e.mjs path/to/tabfit [baseline|threads]
// Starts `tabfit serve --port 0`, opens /demo/ with the bundled demo model,
// loads it, sends one prompt, checks streamed text, the memory table, the
// isolation of the page, then unloads and checks the ledger returned to 0.
// Needs web/dist built (scripts/build-wasm.sh) and web/node_modules (playwright-core).
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const tabfit = process.argv[2];
const build = process.argv[3] ?? 'baseline';
if (!tabfit) { console.error('usage: node web/demo/e2e.mjs path/to/tabfit [baseline|threads]'); process.exit(2); }
const { chromium } = createRequire(path.join(repo, 'web/package.json'))('playwright-core');

function fail(msg) { console.error(`FAIL: ${msg}`); process.exitCode = 1; }

const server = spawn(tabfit, ['serve', '--port', '0', '-q', '--web-root', path.join(repo, 'web'),
  '--models', path.join(repo, 'models')], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => { out += d; const m = /127\.0\.0\.1:(\d+)/.exec(out); if (m) resolve(Number(m[1])); });
  server.on('exit', (code) => reject(new Error(`tabfit serve exited with ${code}`)));
});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tabfit-demo-e2e-'));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.TABFIT_CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${port}/demo/?model=/models/tabfit-demo-8m-f16.gguf&autoload=1&build=${build}`);
  await page.waitForFunction(() => window.tabfitDemo, null, { timeout: 30000 });
  await page.evaluate(() => window.tabfitDemo.ready);
  const env = await page.evaluate(() => ({ isolated: crossOriginIsolated, status: window.tabfitDemo.state.status,
    text: document.getElementById('status').textContent,
    models: [...document.getElementById('model-select').options].map((o) => o.value) }));
  console.log('load:', env.text);
  if (!env.isolated) fail('page is not crossOriginIsolated (COOP/COEP headers missing?)');
  if (!env.models.includes('/models/tabfit-demo-8m-f16.gguf')) fail(`model list: ${JSON.stringify(env.models)}`);
  if (env.status !== 'ready') throw new Error(`model did not load: ${env.text}`);
  const reply = await page.evaluate(() => window.tabfitDemo.send('Once upon a time'));
  console.log('reply:', JSON.stringify(reply).slice(0, 160));
  if (!reply || !reply.text || reply.text.length < 10) fail('no streamed reply');
  await page.waitForFunction(() => document.querySelector('#memory-table tbody').rows.length > 0, null, { timeout: 10000 });
  const mem = await page.evaluate(() => ({
    rows: [...document.querySelectorAll('#memory-table tbody tr')].map((r) => r.cells[0].textContent),
    summary: document.getElementById('memory-summary').textContent,
    total: window.tabfitDemo.state.samples.at(-1).total }));
  console.log('memory:', mem.summary);
  if (!mem.rows.includes('kv_cache') || !mem.rows.some((r) => r.startsWith('layers.'))) fail(`memory rows: ${mem.rows}`);
  if (!(mem.total > 0)) fail('ledger total is 0 while loaded');
  await page.evaluate(() => window.tabfitDemo.unload());
  const after = await page.evaluate(() => ({ status: window.tabfitDemo.state.status,
    total: window.tabfitDemo.state.samples.at(-1).total, text: document.getElementById('status').textContent }));
  console.log('unload:', after.text);
  // The page's memory log renders with the native report tool.
  const log = await page.evaluate(() => window.tabfitDemo.memoryLog());
  const logPath = path.join(dir, 'memory_log.json');
  fs.writeFileSync(logPath, JSON.stringify(log));
  const rep = spawnSync(tabfit, ['memory-report', logPath, '-o', path.join(dir, 'memory_report.html')], { encoding: 'utf8' });
  console.log('memory-report:', (rep.stdout + rep.stderr).trim());
  if (rep.status !== 0) fail('tabfit memory-report rejected the page\'s memory log');
  else if (!fs.readFileSync(path.join(dir, 'memory_report.html'), 'utf8').includes('kv_cache')) fail('report lacks kv_cache');
  if (after.status !== 'unloaded' || after.total !== 0) fail(`after unload: ${JSON.stringify(after)}`);
} catch (e) {
  fail(e.message);
} finally {
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
  server.kill();
}
console.log(process.exitCode ? 'demo e2e: FAILED' : 'demo e2e: ok');
