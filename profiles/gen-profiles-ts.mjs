#!/usr/bin/env node
// Generates web/src/profiles.ts from profiles/*.json, so the JS package carries
// the same built-in profiles as the C++ binary (which embeds them at build time).
//   node profiles/gen-profiles-ts.mjs          write web/src/profiles.ts
//   node profiles/gen-profiles-ts.mjs --check  exit 1 if web/src/profiles.ts is stale
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '../web/src/profiles.ts');
const names = ['chrome', 'edge', 'firefox', 'safari', 'mobile', 'custom'];
const data = {};
for (const n of names) {
  const j = JSON.parse(fs.readFileSync(path.join(here, `${n}.json`), 'utf8'));
  if (j.name !== n) throw new Error(`${n}.json: name is "${j.name}", expected "${n}"`);
  data[n] = j;
}
const template = fs.readFileSync(path.join(here, 'profiles.ts.in'), 'utf8');
const text = template.replace('/*@PROFILES@*/{}', JSON.stringify(data, null, 2));
if (process.argv.includes('--check')) {
  const cur = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
  if (cur !== text) {
    console.error(`${out} is out of date with profiles/*.json; run: node profiles/gen-profiles-ts.mjs`);
    process.exit(1);
  }
  console.log('web/src/profiles.ts is up to date');
} else {
  fs.writeFileSync(out, text);
  console.log(`wrote ${out}`);
}
