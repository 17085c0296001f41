#!/usr/bin/env bash
# KV cache quality matrix (issue 16): PPL, KL vs the f16 cache, top-1 agreement
# and bytes/token for every cache type and pruning setting, on WikiText-2 and
# TinyStories. Prints a markdown table (one row per config and text).
#   bench/kv_quality.sh [MODEL] [CTX] [CHUNKS]
# Defaults: ../shared/models/tabfit-test-30m-f16.gguf, 512, 16 chunks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/build/tabfit"
MODEL="${1:-$ROOT/../shared/models/tabfit-test-30m-f16.gguf}"
CTX="${2:-512}"
CHUNKS="${3:-16}"
EVAL="$ROOT/../shared/models/eval"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
configs=(
  "f16|"
  "q8_0|--kv-type q8_0"
  "q4_0|--kv-type q4_0"
  "mixed w64|--kv-type mixed --kv-recent 64"
  "kivi2 w32|--kv-bits 2 --kv-window 32"
  "kivi2 w64|--kv-bits 2 --kv-window 64"
  "kivi2 w128|--kv-bits 2 --kv-window 128"
  "kivi2 w128 g64|--kv-bits 2 --kv-window 128 --kv-group 64"
  "kivi2 w128 g128|--kv-bits 2 --kv-window 128 --kv-group 128"
  "kivi2 w128 r16|--kv-bits 2 --kv-window 128 --kv-recent-bits 16"
  "kivi3 w64|--kv-bits 3 --kv-window 64"
  "kivi3 w128|--kv-bits 3 --kv-window 128"
  "kivi4 w64|--kv-bits 4 --kv-window 64"
  "kivi4 w128|--kv-bits 4 --kv-window 128"
  "prune 25% budget|--kv-prune 0.75 --kv-prune-strategy budget"
  "prune 25% budget freq|--kv-prune 0.75 --kv-prune-strategy budget --kv-frequency-aware"
  "prune 25% threshold|--kv-prune 0.75 --kv-prune-strategy threshold"
  "prune 25% window|--kv-prune 0.75 --kv-prune-strategy window"
  "prune 50% budget|--kv-prune 0.5 --kv-prune-strategy budget"
  "prune 50% budget freq|--kv-prune 0.5 --kv-prune-strategy budget --kv-frequency-aware"
  "prune 50% threshold|--kv-prune 0.5 --kv-prune-strategy threshold"
  "prune 50% threshold freq|--kv-prune 0.5 --kv-prune-strategy threshold --kv-frequency-aware"
  "prune 50% window|--kv-prune 0.5 --kv-prune-strategy window"
  "prune 50% budget + kivi2 w64|--kv-prune 0.5 --kv-prune-strategy budget --kv-bits 2 --kv-window 64"
)
echo "model $(basename "$MODEL"), ctx $CTX, $CHUNKS chunks; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| text | config | PPL | ΔPPL | KL vs f16 | same top-1 | KV bytes at the chunk's end / $CTX tokens | vs f16 |"
echo "|---|---|---|---|---|---|---|---|"
for text in wikitext2_test.txt tinystories_valid_head794k.txt; do
  ref="$TMP/$text.ref"
  "$BIN" eval -m "$MODEL" -f "$EVAL/$text" -c "$CTX" --chunks "$CHUNKS" --save-logits "$ref" >/dev/null 2>&1
  for cfg in "${configs[@]}"; do
    name="${cfg%%|*}"; flags="${cfg#*|}"
    # shellcheck disable=SC2086
    out="$("$BIN" eval -m "$MODEL" -f "$EVAL/$text" -c "$CTX" --chunks "$CHUNKS" --reference "$ref" $flags 2>&1)" || {
      echo "| $text | $name | error: $(echo "$out" | grep -m1 error) | | | | | |"; continue; }
    ppl=$(echo "$out" | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p')
    dl=$(echo "$out" | sed -n 's/.*ln(PPL\/PPL_ref) = \(-*[0-9.]*\).*/\1/p')
    kl=$(echo "$out" | sed -n 's/^Mean KLD: \([0-9.]*\).*/\1/p')
    top=$(echo "$out" | sed -n 's/^Same top: \([0-9.]*\).*/\1/p')
    # Bytes the cache holds after a whole chunk, per context position (a pruned
    # cache holds fewer tokens; the low-bit cache counts its scratch and whole chunks).
    kvb=$(echo "$out" | sed -n 's/^KV cache: \([0-9]*\) bytes.*/\1/p')
    bpt=$(awk -v b="$kvb" -v c="$CTX" 'BEGIN{printf "%.0f", b/c}')
    [[ "$name" == f16 ]] && f16_bpt="$bpt"
    rel=$(awk -v b="$bpt" -v f="${f16_bpt:-$bpt}" 'BEGIN{printf "1/%.2f", f/b}')
    dppl=$(awk -v d="$dl" 'BEGIN{printf "%+.2f %%", (exp(d)-1)*100}')
    echo "| ${text%%_*} | $name | $ppl | $dppl | $kl | $top % | $bpt | $rel |"
  done
done
