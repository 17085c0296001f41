// tabfit demo page: pick a model, watch it load, chat with streamed output, and
// watch the engine's memory by component. Served by `tabfit serve` at /demo/.
//
// It uses the JS package as compiled into web/dist (scripts/build-wasm.sh):
//   load(source, { profile, onProgress, signal }) -> engine
//   engine.chat.completions.create({ messages, stream: true, ... })
//   engine.memory(), engine.unload()
// and, when present, web/dist/profiles.js (detectProfile) for the "auto" profile.
//
// URL parameters: ?model=URL (preselect), &profile=NAME, &build=threads|baseline, &autoload=1.
// For tests, window.tabfitDemo = { state, load(), send(text), stop(), unload(), memoryLog(), ready }
// and the element ids in index.html (#load-btn, #chat-log, #memory-table ...).

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  engine: null,
  loading: null,        // AbortController of the load in progress
  generating: null,     // AbortController of the generation in progress
  messages: [],         // chat history [{role, content}]
  samples: [],          // memory timeline [{t, total, budget, wasmHeap, groups: {name: bytes}}]
  peaks: new Map(),     // component -> peak bytes (from the ledger)
  groupsSeen: [],       // stable colour order
  pollToken: 0,
  lastError: null,
  status: 'idle',       // idle | loading | ready | generating | unloaded | error
};

let api = null;
let profilesMod = null;

// ---------- helpers ----------

function fmtBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

function setStatus(text, isError = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function showError(e, where) {
  const type = e && e.type ? `${e.type}: ` : '';
  const msg = `${where}: ${type}${e && e.message ? e.message : String(e)}`;
  state.lastError = msg;
  setStatus(msg, true);
  console.error(msg);
}

function groupOf(name) {
  // "layers.12" -> "layers"; "blk.3.attn_q" -> "blk"
  const m = /^(.*?)\.\d+(\..*)?$/.exec(name);
  return m ? m[1] : name;
}

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948',
  '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac', '#1f77b4', '#8c564b'];
function colorOf(group) {
  let i = state.groupsSeen.indexOf(group);
  if (i < 0) { state.groupsSeen.push(group); i = state.groupsSeen.length - 1; }
  return PALETTE[i % PALETTE.length];
}

function setBusy() {
  const s = state.status;
  $('load-btn').disabled = s === 'loading' || s === 'generating';
  $('cancel-btn').disabled = s !== 'loading';
  $('unload-btn').disabled = !(s === 'ready');
  $('prompt').disabled = s !== 'ready' && s !== 'generating';
  $('send-btn').disabled = s !== 'ready';
  $('stop-btn').disabled = s !== 'generating';
  $('download-log-btn').disabled = state.samples.length === 0;
}

function setState(s) {
  state.status = s;
  setBusy();
}

// ---------- environment and models ----------

async function describeEnvironment() {
  const parts = [];
  parts.push(crossOriginIsolated ? 'cross-origin isolated (threads build)' : 'NOT cross-origin isolated (1 thread)');
  if (navigator.hardwareConcurrency) parts.push(`${navigator.hardwareConcurrency} cores`);
  if (navigator.deviceMemory) parts.push(`deviceMemory ${navigator.deviceMemory} GiB`);
  if (performance.memory) parts.push(`JS heap limit ${fmtBytes(performance.memory.jsHeapSizeLimit)}`);
  $('env').textContent = parts.join(' · ');
}

function describeProfile() {
  const choice = $('profile-select').value;
  const info = $('profile-info');
  if (choice === 'auto' && profilesMod) {
    const d = profilesMod.detectProfile();
    const p = d.profile;
    info.textContent = `${d.name}: budget ${p.memory_budget_bytes ? fmtBytes(p.memory_budget_bytes) : 'none'}, ` +
      `max buffer ${fmtBytes(p.max_buffer_bytes)}, threads ${p.threads}, weights ${p.weight_precision}. ` +
      d.reasons.slice(1).join('; ');
  } else if (choice === 'auto') {
    info.textContent = `detected from the user agent: ${api ? api.detectProfileName() : '?'}`;
  } else if (profilesMod && profilesMod.PROFILES[choice]) {
    const p = profilesMod.PROFILES[choice];
    info.textContent = `budget ${p.memory_budget_bytes ? fmtBytes(p.memory_budget_bytes) : 'none'}, ` +
      `max buffer ${fmtBytes(p.max_buffer_bytes)}, threads ${p.threads}, weights ${p.weight_precision}`;
  } else {
    info.textContent = '';
  }
}

function profileOption() {
  const choice = $('profile-select').value;
  if (choice === 'auto' && profilesMod) return profilesMod.detectProfile().profile;  // adjusted copy
  return choice;
}

async function listModels() {
  const sel = $('model-select');
  try {
    const resp = await fetch('/api/models');
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const models = await resp.json();
    sel.textContent = '';
    if (!models.length) sel.append(new Option('(no models in the served folder)', ''));
    for (const m of models) {
      sel.append(new Option(`${m.name} (${fmtBytes(m.size)})`, m.kind === 'gguf' ? m.url : m.manifest));
    }
  } catch (e) {
    sel.textContent = '';
    sel.append(new Option(`(no model list: ${e.message}; type a URL)`, ''));
  }
  const pre = params.get('model');
  $('model-url').value = pre || sel.value;
}

function chosenSource() {
  const file = $('model-file').files[0];
  if (file) return file;
  const url = $('model-url').value.trim();
  if (url) return url;
  return $('model-select').value || null;
}

// ---------- loading ----------

async function loadModel() {
  if (!api) return;
  const source = chosenSource();
  if (!source) { setStatus('pick a served model, type a URL, or choose a file', true); return; }
  if (state.engine) await unloadModel();
  const ac = new AbortController();
  state.loading = ac;
  state.lastError = null;
  setState('loading');
  const started = performance.now();
  const label = typeof source === 'string' ? source : source.name;
  setStatus(`loading ${label}…`);
  $('progress').value = 0;
  try {
    const engine = await api.load(source, {
      profile: profileOption(),
      signal: ac.signal,
      ...(params.get('build') ? { build: params.get('build') } : {}),
      // ?budget=BYTES: a ledger budget below the model's size makes layers stream from OPFS.
      ...(params.get('budget') ? { budgetBytes: Number(params.get('budget')) } : {}),
      onProgress: (p) => {
        const frac = p.total > 0 ? p.loaded / p.total : 0;
        $('progress').value = frac;
        $('progress-text').textContent =
          `${p.phase}: ${fmtBytes(p.loaded)} / ${fmtBytes(p.total)} (${(100 * frac).toFixed(0)}%) — ${p.component}` +
          (p.state ? ` ${p.state}` : '');
      },
    });
    state.engine = engine;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const i = engine.info;
    $('progress').value = 1;
    setStatus(`loaded ${i.name || label} in ${secs} s: ${i.n_layer ?? '?'} layers, ` +
      `context ${i.n_ctx ?? '?'}, ${engine.build} build, profile ${engine.profile.name}; ` +
      (engine.loadResult.residency ?? ''));
    state.samples = [];
    state.peaks.clear();
    setState('ready');
    startMemoryPolling();
  } catch (e) {
    if (e && e.type === 'aborted') setStatus('load cancelled');
    else showError(e, 'load failed');
    setState(state.engine ? 'ready' : 'idle');
  } finally {
    state.loading = null;
  }
}

async function unloadModel() {
  const engine = state.engine;
  if (!engine) return;
  if (state.generating) state.generating.abort();
  state.engine = null;
  state.pollToken++;
  try {
    const rep = await engine.unload();
    recordMemory(rep, 'unload');
    drawMemory();
    setStatus(`unloaded: the ledger holds ${fmtBytes(rep.ledger.total_current)} ` +
      `(peak was ${fmtBytes(rep.ledger.total_peak)}); the worker and its wasm heap are gone`);
  } catch (e) {
    showError(e, 'unload failed');
  }
  setState('unloaded');
}

// ---------- chat ----------

function addBubble(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  $('chat-log').append(div);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
  return div;
}

async function send(text) {
  const engine = state.engine;
  if (!engine || state.status !== 'ready') return null;
  text = (text ?? $('prompt').value).trim();
  if (!text) return null;
  $('prompt').value = '';
  state.messages.push({ role: 'user', content: text });
  addBubble('user', text);
  const bubble = addBubble('assistant', '');
  bubble.classList.add('streaming');
  const ac = new AbortController();
  state.generating = ac;
  setState('generating');
  let reply = '';
  let chunks = 0;
  let finish = null;
  const t0 = performance.now();
  let tFirst = 0;
  try {
    const stream = await engine.chat.completions.create({
      messages: state.messages,
      stream: true,
      max_tokens: Number($('max-tokens').value) || 128,
      temperature: Number($('temperature').value) || 0,
      signal: ac.signal,
    });
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice.delta && choice.delta.content) {
        if (!tFirst) tFirst = performance.now();
        reply += choice.delta.content;
        chunks++;
        bubble.textContent = reply;
        $('chat-log').scrollTop = $('chat-log').scrollHeight;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) {
    if (e && e.type === 'aborted') finish = 'stopped';
    else {
      bubble.classList.add('error');
      showError(e, 'generation failed');
      finish = 'error';
    }
  } finally {
    bubble.classList.remove('streaming');
    state.generating = null;
  }
  const t1 = performance.now();
  state.messages.push({ role: 'assistant', content: reply });
  const rate = tFirst && t1 > tFirst && chunks > 1 ? ((chunks - 1) / ((t1 - tFirst) / 1000)).toFixed(1) : '?';
  $('gen-stats').textContent = `${chunks} pieces, first after ${tFirst ? ((tFirst - t0) / 1000).toFixed(2) : '?'} s, ` +
    `${rate} pieces/s, finish: ${finish}`;
  if (state.engine) setState('ready');
  return { text: reply, finish };
}

function stop() {
  if (state.generating) state.generating.abort();
}

// ---------- memory ----------

function recordMemory(rep, event = 'interval') {
  const groups = {};
  for (const c of rep.ledger.components) {
    const g = groupOf(c.name);
    groups[g] = (groups[g] || 0) + c.current_bytes;
    state.peaks.set(c.name, Math.max(state.peaks.get(c.name) || 0, c.peak_bytes));
  }
  state.samples.push({
    t: performance.now() / 1000,
    event,
    total: rep.ledger.total_current,
    peak: rep.ledger.total_peak,
    budget: rep.ledger.budget_bytes,
    wasmHeap: rep.wasmHeapBytes || 0,
    jsHeap: rep.jsHeap ? rep.jsHeap.usedJSHeapSize : 0,
    groups,
    components: rep.ledger.components,
  });
  if (state.samples.length > 2000) state.samples.splice(0, state.samples.length - 2000);
  $('download-log-btn').disabled = false;
}

async function startMemoryPolling() {
  const token = ++state.pollToken;
  while (token === state.pollToken && state.engine) {
    try {
      recordMemory(await state.engine.memory());
      drawMemory();
    } catch (e) {
      if (token === state.pollToken && state.engine) showError(e, 'memory() failed');
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

function drawMemory() {
  const canvas = $('memory-chart');
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height;
  const L = 74, R = 10, T = 10, B = 24;
  const pw = W - L - R, ph = H - T - B;
  ctx.clearRect(0, 0, W, H);
  const s = state.samples;
  if (!s.length) return;
  const groups = [];
  for (const x of s) for (const g of Object.keys(x.groups)) if (!groups.includes(g)) groups.push(g);
  groups.forEach(colorOf);
  let ymax = 1;
  for (const x of s) ymax = Math.max(ymax, x.total, x.wasmHeap);
  const budget = s[s.length - 1].budget;
  if (budget && budget <= 2 * ymax) ymax = Math.max(ymax, budget);
  ymax *= 1.05;
  const t0 = s[0].t, t1 = Math.max(s[s.length - 1].t, t0 + 1);
  const X = (t) => L + ((t - t0) / (t1 - t0)) * pw;
  const Y = (b) => T + ph - (b / ymax) * ph;

  // grid and y labels
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#666';
  ctx.strokeStyle = '#eee';
  ctx.textAlign = 'right';
  for (let i = 0; i <= 4; i++) {
    const b = (ymax / 4) * i;
    ctx.beginPath(); ctx.moveTo(L, Y(b)); ctx.lineTo(L + pw, Y(b)); ctx.stroke();
    ctx.fillText(fmtBytes(b), L - 6, Y(b) + 4);
  }
  ctx.textAlign = 'center';
  ctx.fillText(`${(t1 - t0).toFixed(0)} s`, L + pw - 12, H - 6);
  ctx.fillText('0 s', L, H - 6);

  // stacked step areas
  const below = new Array(s.length).fill(0);
  for (const g of groups) {
    ctx.beginPath();
    for (let i = 0; i < s.length; i++) {
      const top = Y(below[i] + (s[i].groups[g] || 0));
      const xa = X(s[i].t), xb = i + 1 < s.length ? X(s[i + 1].t) : xa;
      if (i === 0) ctx.moveTo(xa, top); else ctx.lineTo(xa, top);
      ctx.lineTo(xb, top);
    }
    for (let i = s.length - 1; i >= 0; i--) {
      const bot = Y(below[i]);
      const xa = X(s[i].t), xb = i + 1 < s.length ? X(s[i + 1].t) : xa;
      ctx.lineTo(xb, bot);
      ctx.lineTo(xa, bot);
    }
    ctx.closePath();
    ctx.fillStyle = colorOf(g);
    ctx.fill();
    for (let i = 0; i < s.length; i++) below[i] += s[i].groups[g] || 0;
  }
  // wasm heap (it never shrinks) and budget
  if (s.some((x) => x.wasmHeap)) {
    ctx.strokeStyle = '#222'; ctx.lineWidth = 1.5; ctx.setLineDash([]);
    ctx.beginPath();
    s.forEach((x, i) => (i ? ctx.lineTo(X(x.t), Y(x.wasmHeap)) : ctx.moveTo(X(x.t), Y(x.wasmHeap))));
    ctx.stroke();
  }
  if (budget && budget <= ymax) {
    ctx.strokeStyle = '#d62728'; ctx.lineWidth = 1.5; ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(L, Y(budget)); ctx.lineTo(L + pw, Y(budget)); ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.lineWidth = 1;
  ctx.strokeStyle = '#999';
  ctx.strokeRect(L, T, pw, ph);

  // legend
  const legend = $('memory-legend');
  legend.textContent = '';
  for (const g of groups) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'sw';
    sw.style.background = colorOf(g);
    li.append(sw, g);
    legend.append(li);
  }
  legend.insertAdjacentHTML('beforeend',
    '<li><span class="sw" style="background:#222;height:2px;vertical-align:3px"></span>wasm heap</li>' +
    (budget && budget <= ymax
      ? '<li><span class="sw" style="height:0;border-top:2px dashed #d62728;vertical-align:3px"></span>budget</li>'
      : ''));

  // table: latest bytes and peak per component
  const last = s[s.length - 1];
  const tbody = $('memory-table').querySelector('tbody');
  tbody.textContent = '';
  const rows = [...state.peaks.entries()].sort((a, b) => b[1] - a[1]);
  const now = new Map(last.components.map((c) => [c.name, c.current_bytes]));
  for (const [name, peak] of rows) {
    const tr = document.createElement('tr');
    for (const v of [name, fmtBytes(now.get(name) || 0), fmtBytes(peak)]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    tbody.append(tr);
  }
  $('memory-summary').textContent = `ledger ${fmtBytes(last.total)} (peak ${fmtBytes(last.peak)})` +
    (budget ? ` of a ${fmtBytes(budget)} budget` : ', no budget') +
    ` · wasm heap ${fmtBytes(last.wasmHeap)}` + (last.jsHeap ? ` · page JS heap ${fmtBytes(last.jsHeap)}` : '');
}

// memory_log.json in the format of src/memory/report.h (version 1), so
// `tabfit memory-report` renders browser runs like native ones. The browser
// has no RSS; rss_bytes carries the wasm heap size (as core/rss.h does in wasm).
function memoryLog() {
  const s = state.samples;
  const names = [];
  for (const x of s) for (const c of x.components) if (!names.includes(c.name)) names.push(c.name);
  const t0 = s.length ? s[0].t : 0;
  return {
    version: 1,
    budget_bytes: s.length ? s[s.length - 1].budget : 0,
    peak_total_bytes: Math.max(0, ...s.map((x) => x.peak)),
    peak_rss_bytes: Math.max(0, ...s.map((x) => x.wasmHeap)),
    dropped_samples: 0,
    components: names.map((name) => ({ name, peak_bytes: state.peaks.get(name) || 0 })),
    samples: s.map((x) => ({
      t: Math.round((x.t - t0) * 1e6) / 1e6,
      event: x.event,
      total_bytes: x.total,
      rss_bytes: x.wasmHeap,
      components: Object.fromEntries(x.components.filter((c) => c.current_bytes > 0)
        .map((c) => [c.name, c.current_bytes])),
    })),
  };
}

function downloadLog() {
  const blob = new Blob([JSON.stringify(memoryLog(), null, 1)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'memory_log.json';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ---------- wiring ----------

async function init() {
  describeEnvironment();
  try {
    api = await import('../dist/index.js');
  } catch (e) {
    showError(new Error(`${e.message}. Build the JS package first: scripts/build-wasm.sh ` +
      '(it writes web/dist/index.js and the wasm files)'), 'cannot load the tabfit package');
    setState('error');
    return;
  }
  try {
    profilesMod = await import('../dist/profiles.js');
  } catch {
    profilesMod = null;  // older package build: the "auto" profile comes from the user agent only
  }
  const pp = params.get('profile');
  if (pp && [...$('profile-select').options].some((o) => o.value === pp)) $('profile-select').value = pp;
  describeProfile();
  await listModels();
  $('profile-select').addEventListener('change', describeProfile);
  $('model-select').addEventListener('change', () => {
    $('model-url').value = $('model-select').value;
    $('model-file').value = '';
  });
  $('load-btn').addEventListener('click', () => loadModel());
  $('cancel-btn').addEventListener('click', () => state.loading && state.loading.abort());
  $('unload-btn').addEventListener('click', () => unloadModel());
  $('chat-form').addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
  $('prompt').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); send(); }
  });
  $('stop-btn').addEventListener('click', stop);
  $('download-log-btn').addEventListener('click', downloadLog);
  $('clear-btn').addEventListener('click', () => { state.messages = []; $('chat-log').textContent = ''; });
  setState('idle');
  if (params.get('autoload') === '1') await loadModel();
}

const ready = init();
window.tabfitDemo = { state, load: loadModel, send, stop, unload: unloadModel, memoryLog, ready };
