#!/usr/bin/env python3
"""Generates testdata/spm_reference_cases.txt: token ids from the real
SentencePiece library (Debian python3-sentencepiece) for the SentencePiece
models behind the shared GGUF files, as a reference for tokenizer_test.cpp.

Only texts that SentencePiece's normalizer leaves unchanged are used (NFKC-
stable, single spaces, no leading/trailing space), because llama.cpp-style
GGUF tokenizers do not normalize.

Usage: /usr/bin/python3 gen_spm_cases.py <shared dir> > testdata/spm_reference_cases.txt
Line format: <gguf file name> TAB <text hex> TAB <ids, space separated>
"""
import random
import sys
import unicodedata

import sentencepiece as spm

MODELS = [('tabfit-tokenizer.model', 'tabfit-demo-8m-f16.gguf'),
          ('tok512.model', 'stories260K.gguf'),
          ('tok105.model', 'babyllama-tok105-1M.gguf')]
EXTRA = ['Hello world', 'Once upon a time, there was a little girl named Lily.',
         'caf\u00e9 na\u00efve \u2705 \U0001F600 \u6f22\u5b57 end', "I'm 42 years old!", 'a\u00e9\u00e9\u00e9b \u00e9 x',
         'Tom said, "Let\'s go to the park!" The sun was hot.']


def main():
    shared = sys.argv[1]
    lines = []
    for f in ['eval/wikitext2_test.txt', 'eval/tinystories_valid_head794k.txt']:
        text = open(shared + '/models/' + f, encoding='utf-8').read()
        for line in text.split('\n'):
            line = ' '.join(line.split())
            if line and len(line) <= 300 and unicodedata.normalize('NFKC', line) == line:
                lines.append(line)
    random.seed(7)
    picked = random.sample(lines, 40) + EXTRA
    for model, gguf in MODELS:
        sp = spm.SentencePieceProcessor(model_file=shared + '/models/' + model)
        for line in picked:
            print('%s\t%s\t%s' % (gguf, line.encode().hex(), ' '.join(map(str, sp.encode(line)))))


if __name__ == '__main__':
    main()
