// A tiny read-only file layer for the wasm build (linked with --js-library).
//
// The build has no file system (-sFILESYSTEM=0), but one engine input is
// named by a path that the engine opens itself: the draft model
// ("draft_model", opened with open/fstat/pread in src/model/gguf/byte_source.cpp).
// Paths "/tabfit-js/<id>" name the JS source Module.tabfitSources.get(id)
// ({size, read(offset, dst, n, heap)}, as for tfw_load_js), so such a path can
// be passed where the engine wants a file. Only open, stat, pread and close
// are served; every other path is ENOENT (there are no other files).
// Reads run on the thread that calls them: the worker's main wasm thread,
// where the sources live (the draft is read during load and generate calls).
mergeInto(LibraryManager.library, {
  $TABFIT_FILES: {
    next: 1000,
    open: {},  // fd -> source id
    // -> the source id named by a path, or -1
    idOf: function(pathPtr) {
      var m = /^\/tabfit-js\/(\d+)$/.exec(UTF8ToString(pathPtr));
      return m && Module.tabfitSources && Module.tabfitSources.get(Number(m[1])) ? Number(m[1]) : -1;
    },
    stat: function(id, buf) {
      var src = Module.tabfitSources.get(id);
      HEAPU8.fill(0, buf, buf + 88);                 // sizeof(struct stat) on wasm32
      HEAP32[(buf + 12) >>> 2] = 0x8124;             // st_mode: S_IFREG | 0444
      HEAP32[(buf + 16) >>> 2] = 1;                  // st_nlink
      HEAP32[(buf + 40) >>> 2] = src.size >>> 0;     // st_size (i64, little-endian)
      HEAP32[(buf + 44) >>> 2] = Math.floor(src.size / 4294967296);
      HEAP32[(buf + 48) >>> 2] = 4096;               // st_blksize
      return 0;
    },
  },

  __syscall_open__deps: ['$TABFIT_FILES'],
  __syscall_open: function(path, flags, varargs) {
    var id = TABFIT_FILES.idOf(path);
    if (id < 0) return -44;                          // ENOENT
    if ((flags & 3) !== 0) return -63;               // EROFS: read-only
    var fd = TABFIT_FILES.next++;
    TABFIT_FILES.open[fd] = id;
    return fd;
  },
  __syscall_stat64__deps: ['$TABFIT_FILES'],
  __syscall_stat64: function(path, buf) {
    var id = TABFIT_FILES.idOf(path);
    return id < 0 ? -44 : TABFIT_FILES.stat(id, buf);
  },
  __syscall_lstat64__deps: ['$TABFIT_FILES'],
  __syscall_lstat64: function(path, buf) {
    var id = TABFIT_FILES.idOf(path);
    return id < 0 ? -44 : TABFIT_FILES.stat(id, buf);
  },
  __syscall_fstatat64__deps: ['$TABFIT_FILES'],
  __syscall_fstatat64: function(dirfd, path, buf, flags) {
    var id = TABFIT_FILES.idOf(path);
    return id < 0 ? -44 : TABFIT_FILES.stat(id, buf);
  },
  __syscall_fstat64__deps: ['$TABFIT_FILES'],
  __syscall_fstat64: function(fd, buf) {
    var id = TABFIT_FILES.open[fd];
    if (id === undefined || !Module.tabfitSources.get(id)) return -8;  // EBADF
    return TABFIT_FILES.stat(id, buf);
  },
  fd_pread__deps: ['$TABFIT_FILES'],
  fd_pread: function(fd, iov, iovcnt, offset_low, offset_high, pnum) {
    var id = TABFIT_FILES.open[fd];
    var src = id === undefined ? null : Module.tabfitSources.get(id);
    if (!src) return 8;                              // EBADF
    var offset = (offset_low >>> 0) + (offset_high >>> 0) * 4294967296;
    var done = 0;
    try {
      for (var i = 0; i < iovcnt; i++) {
        var ptr = HEAPU32[(iov + 8 * i) >>> 2], len = HEAPU32[(iov + 8 * i + 4) >>> 2];
        var n = Math.min(len, Math.max(0, src.size - offset - done));
        if (n > 0) src.read(offset + done, ptr, n, HEAPU8);
        done += n;
        if (n < len) break;
      }
    } catch (e) {
      src.error = e;
      return 29;                                     // EIO
    }
    HEAPU32[pnum >>> 2] = done;
    return 0;
  },
  fd_close__deps: ['$TABFIT_FILES'],
  fd_close: function(fd) {
    delete TABFIT_FILES.open[fd];
    return 0;
  },
});
