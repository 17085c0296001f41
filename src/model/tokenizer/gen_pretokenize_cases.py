#!/usr/bin/env python3
"""Generates testdata/pretokenize_cases.txt: random strings split by the real
pre-tokenizer regexes (Python's backtracking `re`, with \\p{L}, \\p{N}, \\p{P}
expanded into explicit classes from unicodedata and \\s as llama.cpp's set),
as a reference for pretokenize_test.cpp.

Usage: python3 gen_pretokenize_cases.py > testdata/pretokenize_cases.txt
Line format: <pre> TAB <input hex> TAB <word hex>|<word hex>|...
"""
import random
import re
import unicodedata


def ranges_class(cps):
    out = []
    start = prev = cps[0]
    for c in cps[1:]:
        if c == prev + 1:
            prev = c
            continue
        out.append((start, prev))
        start = prev = c
    out.append((start, prev))
    return ''.join(re.escape(chr(a)) if a == b else re.escape(chr(a)) + '-' + re.escape(chr(b)) for a, b in out)


CATS = {'L': [], 'N': [], 'P': []}
for cp in range(0x110000):
    if 0xD800 <= cp < 0xE000:
        continue
    k = unicodedata.category(chr(cp))[0]
    if k in CATS:
        CATS[k].append(cp)
L, N, P = (ranges_class(CATS[k]) for k in 'LNP')
S = ranges_class([*range(9, 14), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F,
                  0x3000])


def conv(rx):
    rx = rx.replace(r'[^\r\n\p{L}\p{N}]', '[^\r\n' + L + N + ']')
    rx = rx.replace(r'[^\s\p{L}\p{N}]', '[^' + S + L + N + ']')
    rx = rx.replace(r'[\p{P}', '[' + P)
    rx = rx.replace(r'\p{L}', '[' + L + ']').replace(r'\p{N}', '[' + N + ']')
    rx = rx.replace(r'\s', '[' + S + ']').replace(r'(?!\S)', '(?![^' + S + '])')
    return re.compile(rx)


LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r'\p{N}{1,3}', r'\p{N}')
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
PRES = {
    'llama-bpe': [LLAMA3],
    'qwen2': [QWEN2],
    'gpt2': [GPT2],
    'default': [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
}


def split_one(rx, text):
    out, last = [], 0
    for m in rx.finditer(text):
        if m.start() > last:
            out.append(text[last:m.start()])
        if m.end() > m.start():
            out.append(m.group())
        last = m.end()
    if last < len(text):
        out.append(text[last:])
    return out


def split(regexes, text):
    words = [text] if text else []
    for rx in regexes:
        words = [w for part in words for w in split_one(rx, part)]
    return words


ALPHABET = list("aZ\u00e9 \u00df\u03a3\u6f22\u5b57123\u0663\u00bd'sStTrReEvVmMlLdD .,!?$+<=>^~|-_\t\n\r"
                "\u3000\u00a0\u2028\U0001F600\u2705\u0301\u200b") + ["'re", "'ll", "'VE", " \n", "\r\n", "  ", "1234"]


def main():
    random.seed(20261126)
    compiled = {name: [conv(r) for r in rxs] for name, rxs in PRES.items()}
    for name, rxs in compiled.items():
        for _ in range(150):
            text = ''.join(random.choice(ALPHABET) for _ in range(random.randint(0, 14)))
            words = split(rxs, text)
            assert ''.join(words) == text
            print('%s\t%s\t%s' % (name, text.encode().hex(), '|'.join(w.encode().hex() for w in words)))


if __name__ == '__main__':
    main()
