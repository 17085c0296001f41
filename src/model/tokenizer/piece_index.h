// tabfit model/tokenizer (internal): a compact open-addressing hash map from
// byte strings to int32 values, for the tokenizers' hot lookups (piece -> id,
// merge pair -> rank). Keys are stored once in one buffer; slots hold a hash
// and an entry index, so a probe touches few cache lines (unordered_map's
// nodes made lookups the encoder's main cost).
//
// Thread-safety: const methods are safe concurrently; Insert is not.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
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

  size_t size() const { return entries_.size(); }

  // Adds `key` -> `value`. An existing key keeps its value unless `overwrite`.
  void Insert(std::string_view key, int32_t value, bool overwrite) {
    if ((entries_.size() + 1) * 2 > slots_.size()) Grow();
    const uint64_t h = Hash(key);
    size_t i = h & mask_;
    while (true) {
      Slot& s = slots_[i];
      if (s.entry < 0) {
        s.hash = static_cast<uint32_t>(h >> 32);
        s.entry = static_cast<int32_t>(entries_.size());
        entries_.push_back({keys_.size(), key.size(), value});
        keys_.append(key);
        return;
      }
      if (s.hash == static_cast<uint32_t>(h >> 32) && KeyOf(s.entry) == key) {
        if (overwrite) entries_[s.entry].value = value;
        return;
      }
      i = (i + 1) & mask_;
    }
  }

  // The value of `key`, or -1.
  int32_t Find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = Hash(key);
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    size_t i = h & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.entry < 0) return -1;
      if (s.hash == tag && KeyOf(s.entry) == key) return entries_[s.entry].value;
      i = (i + 1) & mask_;
    }
  }

 private:
  struct Slot {
    uint32_t hash = 0;  // high half of the key's hash
    int32_t entry = -1;
  };
  struct Entry {
    size_t off, len;
    int32_t value;
  };

  std::string_view KeyOf(int32_t entry) const {
    const Entry& e = entries_[entry];
    return std::string_view(keys_).substr(e.off, e.len);
  }

  void Grow() {
    const size_t cap = slots_.empty() ? 64 : slots_.size() * 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (size_t k = 0; k < entries_.size(); ++k) {
      const uint64_t h = Hash(KeyOf(static_cast<int32_t>(k)));
      size_t i = h & mask_;
      while (slots_[i].entry >= 0) i = (i + 1) & mask_;
      slots_[i] = Slot{static_cast<uint32_t>(h >> 32), static_cast<int32_t>(k)};
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::vector<Entry> entries_;
  std::string keys_;
};

}  // namespace tabfit
