#!/usr/bin/env node
// Writes the chunk manifest load() checks downloads against:
//   node web/tools/make-manifest.mjs model.gguf [--chunk 16MiB] > model.gguf.manifest.json
// {"size": bytes, "chunk_bytes": N, "sha256": [hex of each N-byte chunk]}. Pass it as
// load(url, { manifest }) (chunk_bytes must not exceed the profile's max buffer).
// tabfit packages (tabfit convert) carry their own hashes and need no manifest.
import fs from 'node:fs';
import crypto from 'node:crypto';

function parseBytes(s) {
  const m = /^(\d+(?:\.\d+)?)\s*(|k|kib|m|mib|g|gib|kb|mb|gb)$/i.exec(String(s).trim());
  if (!m) throw new Error(`bad size "${s}" (e.g. 16MiB, 4194304)`);
  const unit = { '': 1, k: 1024, kib: 1024, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, kb: 1e3, mb: 1e6, gb: 1e9 };
  return Math.floor(Number(m[1]) * unit[m[2].toLowerCase()]);
}

const args = process.argv.slice(2);
const i = args.indexOf('--chunk');
const chunk = i >= 0 ? parseBytes(args.splice(i, 2)[1]) : 16 * 2 ** 20;
const file = args[0];
if (!file || chunk < 4096) {
  console.error('usage: node web/tools/make-manifest.mjs model.gguf [--chunk 16MiB] > manifest.json');
  process.exit(2);
}
const fd = fs.openSync(file, 'r');
const size = fs.fstatSync(fd).size;
const buf = Buffer.alloc(chunk);
const sha256 = [];
for (let off = 0; off < size; off += chunk) {
  const n = fs.readSync(fd, buf, 0, Math.min(chunk, size - off), off);
  sha256.push(crypto.createHash('sha256').update(buf.subarray(0, n)).digest('hex'));
}
fs.closeSync(fd);
process.stdout.write(JSON.stringify({ size, chunk_bytes: chunk, sha256 }) + '\n');
