#include "model/gguf/byte_source.h"

#include <fcntl.h>
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
