// tabfit model/package: streaming SHA-256 (chunk and tensor checksums).
//
// Natively it is OpenSSL's EVP SHA-256 (libssl-dev); builds without OpenSSL
// (WebAssembly) use the portable implementation below, which is also always
// compiled so tests can check the two agree.
// Thread-compatible: one hasher per thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tabfit {

using Sha256Digest = std::array<uint8_t, 32>;

// FIPS 180-4 SHA-256 in portable C++.
class PortableSha256 {
 public:
  PortableSha256();
  void Update(const void* data, size_t n);
  Sha256Digest Final();  // the hasher must not be used afterwards

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void Update(const void* data, size_t n);
  Sha256Digest Final();
  std::string FinalHex() { return DigestHex(Final()); }
  static std::string DigestHex(const Sha256Digest& d);
  // "openssl" or "portable".
  static const char* Backend();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tabfit
