#include "model/tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace tabfit::unicode {
namespace {

struct Range {
  uint32_t first, last;
  uint8_t flags;
};

constexpr Range kRanges[] = {
#include "model/tokenizer/unicode_tables.inc"
};

struct ByteMap {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 324> cp_to_byte;  // every mapped code point is < 324
  ByteMap() {
    cp_to_byte.fill(-1);
    // GPT-2 bytes_to_unicode(): printable Latin-1 bytes map to themselves,
    // the other 68 bytes to 256, 257, ... in byte order.
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      AppendUtf8(cp, &byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& GetByteMap() {
  static const ByteMap map;
  return map;
}

}  // namespace

uint8_t Flags(uint32_t cp) {
  // Binary search for the last range with first <= cp.
  const Range* end = kRanges + std::size(kRanges);
  const Range* it = std::upper_bound(kRanges, end, cp, [](uint32_t v, const Range& r) { return v < r.first; });
  if (it == kRanges) return 0;
  --it;
  return cp <= it->last ? it->flags : 0;
}

std::vector<Unit> DecodeUtf8(std::string_view s) {
  std::vector<Unit> units;
  units.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b = p[i];
    uint32_t cp = kReplacementChar;
    size_t len = 1;
    if (b < 0x80) {
      cp = b;
    } else if ((b & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
      cp = (uint32_t(b & 0x1F) << 6) | (p[i + 1] & 0x3F);
      len = 2;
    } else if ((b & 0xF0) == 0xE0 && i + 2 < n && (p[i + 1] & 0xC0) == 0x80 && (p[i + 2] & 0xC0) == 0x80) {
      cp = (uint32_t(b & 0x0F) << 12) | (uint32_t(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
      len = 3;
    } else if ((b & 0xF8) == 0xF0 && i + 3 < n && (p[i + 1] & 0xC0) == 0x80 && (p[i + 2] & 0xC0) == 0x80 &&
               (p[i + 3] & 0xC0) == 0x80) {
      cp = (uint32_t(b & 0x07) << 18) | (uint32_t(p[i + 1] & 0x3F) << 12) | (uint32_t(p[i + 2] & 0x3F) << 6) |
           (p[i + 3] & 0x3F);
      len = 4;
      if (cp > 0x10FFFF) {
        cp = kReplacementChar;
        len = 1;
      }
    }
    units.push_back(Unit{cp, static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    i += len;
  }
  return units;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const std::string& ByteToUnicode(uint8_t b) { return GetByteMap().byte_to_utf8[b]; }

int UnicodeToByte(uint32_t cp) {
  const auto& m = GetByteMap().cp_to_byte;
  return cp < m.size() ? m[cp] : -1;
}

}  // namespace tabfit::unicode
