#include "model/gguf/byte_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tabfit {

Status CheckReadRange(const std::string& name, uint64_t size, uint64_t offset, uint64_t n) {
  if (offset > size || n > size - offset) {
    return OutOfRange(name + ": read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                      " runs past the end (size " + std::to_string(size) +
                      "); the file may be truncated");
  }
  return Status::Ok();
}

namespace {

class FileSource final : public ByteSource {
 public:
  FileSource(int fd, uint64_t size, std::string name) : fd_(fd), size_(size), name_(std::move(name)) {}
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }

  Result<std::shared_ptr<const uint8_t>> MapRange(uint64_t offset, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(name_, size_, offset, n));
    if (n == 0) return Unsupported(name_ + ": empty range");
    // The file must still hold the range: mapping past its end would fault later.
    struct stat st;
    if (::fstat(fd_, &st) != 0) return IoError(name_ + ": fstat failed: " + std::strerror(errno));
    if (static_cast<uint64_t>(st.st_size) < offset + n) {
      return IoError(name_ + ": unexpected end of file: bytes " + std::to_string(offset) + "-" +
                     std::to_string(offset + n - 1) + " are past its end (" + std::to_string(st.st_size) +
                     " bytes; the file shrank while open?)");
    }
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t base = offset / page * page;
    const size_t len = static_cast<size_t>(offset + n - base);
    void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd_, static_cast<off_t>(base));
    if (p == MAP_FAILED) {
      return IoError(name_ + ": mmap of bytes " + std::to_string(offset) + "-" + std::to_string(offset + n - 1) +
                     " failed: " + std::strerror(errno));
    }
    std::shared_ptr<const uint8_t> whole(static_cast<const uint8_t*>(p), [len](const uint8_t* q) {
      ::munmap(const_cast<uint8_t*>(q), len);
    });
    return std::shared_ptr<const uint8_t>(whole, whole.get() + (offset - base));
  }

  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(name_, size_, offset, n));
    auto* out = static_cast<uint8_t*>(dst);
    size_t done = 0;
    while (done < n) {
      size_t want = n - done;
      if (want > (size_t{1} << 30)) want = size_t{1} << 30;
      ssize_t got = ::pread(fd_, out + done, want, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        return IoError(name_ + ": read of " + std::to_string(want) + " bytes at offset " +
                       std::to_string(offset + done) + " failed: " + std::strerror(errno));
      }
      if (got == 0) {
        return IoError(name_ + ": unexpected end of file at offset " + std::to_string(offset + done) +
                       " (the file shrank while open?)");
      }
      done += static_cast<size_t>(got);
    }
    return Status::Ok();
  }

 private:
  int fd_;
  uint64_t size_;
  std::string name_;
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(std::vector<uint8_t> bytes, std::string name) : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  const uint8_t* data() const override { return bytes_.data(); }
  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(name_, bytes_.size(), offset, n));
    if (n) std::memcpy(dst, bytes_.data() + offset, n);
    return Status::Ok();
  }

 private:
  std::vector<uint8_t> bytes_;
  std::string name_;
};

class MemoryViewSource final : public ByteSource {
 public:
  MemoryViewSource(const uint8_t* data, size_t size, std::string name)
      : data_(data), size_(size), name_(std::move(name)) {}
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const uint8_t* data() const override { return data_; }
  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(name_, size_, offset, n));
    if (n) std::memcpy(dst, data_ + offset, n);
    return Status::Ok();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string name_;
};

}  // namespace

Result<std::shared_ptr<const uint8_t>> ByteSource::MapRange(uint64_t, size_t) const {
  return Unsupported(name() + ": this source cannot be mapped; it is read instead");
}


Result<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return NotFound(path + ": no such file; check the path");
    return IoError(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return IoError(path + ": cannot stat: " + std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(path + ": is a directory, expected a file");
  }
  if (st.st_size < 0) {
    ::close(fd);
    return IoError(path + ": negative file size");
  }
  return std::unique_ptr<ByteSource>(new FileSource(fd, static_cast<uint64_t>(st.st_size), path));
}

std::unique_ptr<ByteSource> MakeMemorySource(std::vector<uint8_t> bytes, std::string name) {
  return std::make_unique<MemorySource>(std::move(bytes), std::move(name));
}

std::unique_ptr<ByteSource> MakeMemoryViewSource(const uint8_t* data, size_t size, std::string name) {
  return std::make_unique<MemoryViewSource>(data, size, std::move(name));
}

}  // namespace tabfit
