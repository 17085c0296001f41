// tabfit model/tokenizer (internal): a compact open-addressing hash index from
// byte strings to int32 values, for the tokenizers' hot lookups (piece -> id,
// merge pair -> rank). It stores no key text: each slot holds a hash tag and a
// value, and the caller's `key_of(value)` gives the key back (the token text
// of an id, the merge text of a rank). 8 bytes a slot at most 70 % load, so a
// 128k vocab's index is 2 MiB and a probe touches few cache lines.
//
// Thread-safety: Find is safe concurrently; Insert is not.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace tabfit {

class PieceIndex {
 public:
  // FNV-1a, 64-bit: keys are short (pieces, "left right" merges).
  static uint64_t Hash(std::string_view s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
  }

  size_t size() const { return count_; }
  size_t MemoryBytes() const { return slots_.capacity() * sizeof(Slot); }

  // Adds key -> value (key == key_of(value)). An existing key keeps its value
  // unless `overwrite`.
  template <typename KeyOf>
  void Insert(std::string_view key, int32_t value, bool overwrite, const KeyOf& key_of) {
    if ((count_ + 1) * 10 > slots_.size() * 7) Grow(key_of);
    const uint64_t h = Hash(key);
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.value < 0) {
        s = Slot{tag, value};
        ++count_;
        return;
      }
      if (s.tag == tag && key_of(s.value) == key) {
        if (overwrite) s.value = value;
        return;
      }
    }
  }

  // The value whose key equals `key`, or -1.
  template <typename KeyOf>
  int32_t Find(std::string_view key, const KeyOf& key_of) const {
    if (slots_.empty()) return -1;
    const uint64_t h = Hash(key);
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.value < 0) return -1;
      if (s.tag == tag && key_of(s.value) == key) return s.value;
    }
  }

 private:
  struct Slot {
    uint32_t tag = 0;  // high half of the key's hash
    int32_t value = -1;
  };

  template <typename KeyOf>
  void Grow(const KeyOf& key_of) {
    std::vector<Slot> old;
    old.swap(slots_);
    const size_t cap = old.empty() ? 64 : old.size() * 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (const Slot& s : old) {
      if (s.value < 0) continue;
      size_t i = Hash(key_of(s.value)) & mask_;
      while (slots_[i].value >= 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

}  // namespace tabfit
