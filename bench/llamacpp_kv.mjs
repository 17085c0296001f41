#!/usr/bin/env node
// llama.cpp's decode speed at a deep context with f16 and quantized KV caches
// (node-llama-cpp 3.21.1, prebuilt CPU build), for comparison with
// `tabfit bench -p 0 -n 32 -d 2048 --kv-type f16|q8_0 / --kv-bits 2`.
//   (cd bench/node && npm ci)
//   node bench/llamacpp_kv.mjs MODEL.gguf [depth=2048] [n=32] [threads=2]
// For each KV type: a 2048-token prompt of fixed token ids is evaluated, then n
// greedy tokens are generated; the rate is (n-1) steps over the time between the
// first and the last generated token. Quantized V in llama.cpp needs flash
// attention, so every type runs with flashAttention on, and F16 also without.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [modelPath, depthArg, nArg, threadsArg] = process.argv.slice(2);
if (!modelPath) {
  console.error("usage: node bench/llamacpp_kv.mjs MODEL.gguf [depth] [n] [threads]");
  process.exit(2);
}
const depth = Number(depthArg ?? 2048), n = Number(nArg ?? 32), threads = Number(threadsArg ?? 2);
const nlc = await import(pathToFileURL(path.join(repo, "bench/node/node_modules/node-llama-cpp/dist/index.js")).href);
const llama = await nlc.getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const prompt = Array.from({ length: depth }, (_, i) => 3 + ((i * 7919) % 31000));
const rows = [];
for (const [kv, fa] of [["F16", false], ["F16", true], ["Q8_0", true], ["Q4_0", true]]) {
  const context = await model.createContext({ contextSize: depth + n + 64, batchSize: 512, threads, sequences: 1,
    flashAttention: fa, experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv });
  try {
    const seq = context.getSequence();
    let count = 0, tFirst = 0, tLast = 0;
    for await (const _tok of seq.evaluate(prompt, { temperature: 0 })) {
      const t = performance.now();
      if (count === 0) tFirst = t;
      tLast = t;
      if (++count >= n) break;
    }
    rows.push({ kv, flashAttention: fa, tokensPerSecond: ((count - 1) * 1000) / (tLast - tFirst) });
    console.log(`llama.cpp KV ${kv}${fa ? " (flash attention)" : ""}: ${rows.at(-1).tokensPerSecond.toFixed(2)} tok/s at depth ${depth}`);
  } finally {
    await context.dispose();
  }
}
await model.dispose();
