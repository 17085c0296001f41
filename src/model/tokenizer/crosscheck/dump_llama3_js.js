const fs = require('fs');
const mod = require('llama3-tokenizer-js');
const tok = mod.default || mod;
const v = tok.vocabById;
fs.writeFileSync((process.env.OUT || '/tmp/') + 'l3_vocab.hex', v.map(s => Buffer.from(s, 'utf8').toString('hex')).join('\n') + '\n');
const merges = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]);
fs.writeFileSync((process.env.OUT || '/tmp/') + 'l3_merges.hex', merges.map(([k, r]) => {
  const [a, b] = k.split(' ');
  return Buffer.from(a, 'utf8').toString('hex') + ' ' + Buffer.from(b, 'utf8').toString('hex');
}).join('\n') + '\n');
console.log('vocab', v.length, 'merges', merges.length, merges[0], merges[merges.length-1]);
// encode test texts
const texts = [];
const inp = fs.readFileSync('/work/shared/models/tokenizer-tests/ggml-vocab-llama-spm.gguf.inp', 'utf8').split('\n__ggml_vocab_test__\n');
inp.pop();
texts.push(...inp);
const wiki = fs.readFileSync('/work/shared/models/eval/wikitext2_test.txt', 'utf8');
const ts = fs.readFileSync('/work/shared/models/eval/tinystories_valid_head794k.txt', 'utf8');
for (let i = 0; i < 40; ++i) texts.push(wiki.slice(i * 30000, i * 30000 + 3000));
for (let i = 0; i < 20; ++i) texts.push(ts.slice(i * 30000, i * 30000 + 3000));
texts.push(wiki.slice(0, 100000));
const out = texts.map(t => Buffer.from(t, 'utf8').toString('hex') + '\t' + tok.encode(t, {bos: false, eos: false}).join(' '));
fs.writeFileSync((process.env.OUT || '/tmp/') + 'l3_cases.txt', out.join('\n') + '\n');
console.log('cases', texts.length);
