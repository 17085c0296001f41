// Model bytes inside the engine worker: download, store, and serve them to the
// wasm loader with synchronous reads.
//
// Storage (per model URL):
//  - OPFS (origin private file system) when the worker can open synchronous
//    access handles: the response body is streamed in chunks of at most
//    `chunkBytes` (at most the profile's max buffer) into one file, each chunk checked
//    against the manifest's sha256 when one is given, then a small JSON record
//    marks the file complete. A later load finds it and downloads nothing. The
//    engine's reads go straight from the file into the wasm heap, so the page
//    never holds the model in JS memory: peak ≈ the engine's weights + one chunk
//    (during the download only).
//  - Memory, when OPFS is unavailable (or cache: false): the chunks stay in JS
//    until the engine's loader has read past them (it reads tensors in file
//    order), then each is dropped. Nothing persists.
//  - A Blob / File source is read with FileReaderSync, slice by slice.
//
// Streaming (a model larger than the budget): OPFS and Blob sources stay
// readable at no JS-memory cost, so the worker keeps them open after the load
// and the engine reads streamed (or later unloaded) layers from them again
// during generation; the OPFS access handle is closed when the engine unloads.
// Memory chunks are normally dropped as they are read; retain() keeps them all
// (the caller asked for re-reads with unloadUnusedLayers: true).

import { TabfitError } from './errors.js';
import type { ChunkManifest, LoadProgress } from './protocol.js';

/** Synchronous random access to the model file for the wasm loader. */
export interface ModelBytes {
  readonly name: string;
  readonly size: number;
  readonly storage: 'opfs' | 'memory';
  readonly fromCache: boolean;
  readonly networkBytes: number;
  /** Copies `n` bytes at `offset` into heap[dst .. dst+n). Throws on failure. */
  read(offset: number, dst: number, n: number, heap: Uint8Array): void;
  /** The engine has started reading tensors (header parsing is over). */
  tensorPhase(): void;
  /** Model chunks still held in JS memory (0 for storage-backed sources). */
  heldChunks(): number;
  /** The bytes can be read again after the load without holding them in JS (OPFS, Blob). */
  readonly rereadable: boolean;
  /** Keep every byte readable until close() (memory chunks: never drop one). */
  retain(): void;
  close(): void;
}

export interface FetchOptions {
  url: string;
  name: string;
  /** Download unit for plain GGUF URLs (at most maxBufferBytes). */
  chunkBytes: number;
  /** The profile's largest single buffer: the limit for a package chunk or a manifest chunk. */
  maxBufferBytes?: number;
  manifest?: ChunkManifest;
  cache: boolean;
  signal: AbortSignal;
  onProgress: (p: LoadProgress) => void;
}

const DIR_NAME = 'tabfit-models';

interface StoredRecord {
  url: string;
  size: number;
  chunk_bytes: number;
  sha256: string[] | null;
  complete: boolean;
  etag: string | null;
  stored_at: string;
}

// Minimal typings for the OPFS sync API (not in every TS DOM lib).
interface SyncAccessHandle {
  read(buffer: ArrayBufferView, options?: { at: number }): number;
  write(buffer: ArrayBufferView, options?: { at: number }): number;
  truncate(size: number): void;
  getSize(): number;
  flush(): void;
  close(): void;
}
type SyncFileHandle = FileSystemFileHandle & {
  createSyncAccessHandle(options?: { mode?: string }): Promise<SyncAccessHandle>;
};

function hex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256Hex(data: Uint8Array): Promise<string> {
  return hex(await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>));
}

async function keyFor(url: string): Promise<string> {
  return (await sha256Hex(new TextEncoder().encode(url))).slice(0, 32);
}

function throwIfAborted(signal: AbortSignal, what: string): void {
  if (signal.aborted) throw new TabfitError('aborted', `${what} aborted by the caller`);
}

async function opfsDir(): Promise<FileSystemDirectoryHandle | null> {
  try {
    if (!navigator.storage?.getDirectory) return null;
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(DIR_NAME, { create: true });
    // Sync access handles exist only in dedicated workers of some browsers.
    const probe = (await dir.getFileHandle('.probe', { create: true })) as SyncFileHandle;
    if (typeof probe.createSyncAccessHandle !== 'function') return null;
    return dir;
  } catch {
    return null;
  }
}

async function readRecord(dir: FileSystemDirectoryHandle, key: string): Promise<StoredRecord | null> {
  try {
    const fh = await dir.getFileHandle(`${key}.json`);
    return JSON.parse(await (await fh.getFile()).text()) as StoredRecord;
  } catch {
    return null;
  }
}

async function writeRecord(dir: FileSystemDirectoryHandle, key: string, rec: StoredRecord): Promise<void> {
  const fh = (await dir.getFileHandle(`${key}.json`, { create: true })) as SyncFileHandle;
  const h = await fh.createSyncAccessHandle();
  try {
    const bytes = new TextEncoder().encode(JSON.stringify(rec));
    h.truncate(0);
    h.write(bytes, { at: 0 });
    h.flush();
  } finally {
    h.close();
  }
}

function checkManifest(m: ChunkManifest | undefined, chunkBytes: number): void {
  if (!m) return;
  if (!(m.chunk_bytes > 0) || !Array.isArray(m.sha256) || !(m.size >= 0)) {
    throw new TabfitError('invalid_argument', 'manifest: needs {size, chunk_bytes, sha256: [hex per chunk]}');
  }
  if (m.sha256.length !== Math.ceil(m.size / m.chunk_bytes)) {
    throw new TabfitError('invalid_argument',
      `manifest: ${m.sha256.length} hashes for ${m.size} bytes in chunks of ${m.chunk_bytes} ` +
      `(expected ${Math.ceil(m.size / m.chunk_bytes)}); regenerate it with web/tools/make-manifest.mjs`);
  }
  if (m.chunk_bytes > chunkBytes) {
    throw new TabfitError('buffer_limit',
      `manifest chunks of ${m.chunk_bytes} bytes exceed the profile's max buffer (${chunkBytes} bytes); ` +
      'regenerate the manifest with a smaller --chunk');
  }
}

/**
 * Streams `url` chunk by chunk, handing each completed chunk (a view valid only
 * during the call) to `sink`. Verifies chunk hashes when a manifest is given.
 */
async function streamChunks(o: FetchOptions, chunkBytes: number,
  sink: (chunk: Uint8Array, offset: number, index: number) => Promise<void> | void):
  Promise<{ size: number; etag: string | null; hashes: string[] | null }> {
  let resp: Response;
  try {
    resp = await fetch(o.url, { signal: o.signal });
  } catch (e) {
    throwIfAborted(o.signal, `download of ${o.url}`);
    throw new TabfitError('network', `${o.url}: fetch failed (${(e as Error).message}); check the URL, ` +
      'that the server is running and that it allows this origin (CORS / Cross-Origin-Resource-Policy)');
  }
  if (!resp.ok || !resp.body) {
    throw new TabfitError(resp.status === 404 ? 'not_found' : 'network',
      `${o.url}: HTTP ${resp.status} ${resp.statusText}; check the model URL`);
  }
  const lengthHeader = Number(resp.headers.get('content-length'));
  const total = o.manifest?.size ?? (Number.isFinite(lengthHeader) && lengthHeader > 0 ? lengthHeader : 0);
  const unit = o.manifest ? o.manifest.chunk_bytes : chunkBytes;
  const buf = new Uint8Array(unit);  // the one chunk held in JS during the download
  let fill = 0, offset = 0, index = 0;
  const hashes: string[] | null = o.manifest ? [] : null;
  const flush = async () => {
    const chunk = buf.subarray(0, fill);
    if (o.manifest) {
      const want = o.manifest.sha256[index];
      const got = await sha256Hex(chunk);
      if (got !== want?.toLowerCase()) {
        throw new TabfitError('corrupt_data',
          `${o.url}: chunk ${index} (bytes ${offset}..${offset + fill}) has sha256 ${got}, the manifest says ` +
          `${want}; the download was corrupted or the manifest belongs to another file — load again or fix the manifest`);
      }
      hashes!.push(got);
    }
    await sink(chunk, offset, index);
    offset += fill;
    fill = 0;
    index++;
  };
  const reader = resp.body.getReader();
  for (;;) {
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await reader.read();
    } catch (e) {
      throwIfAborted(o.signal, `download of ${o.url}`);
      throw new TabfitError('network', `${o.url}: the download broke off after ${offset + fill} bytes ` +
        `(${(e as Error).message}); load again`);
    }
    if (r.done) break;
    let v = r.value;
    while (v.length > 0) {
      const take = Math.min(v.length, unit - fill);
      buf.set(v.subarray(0, take), fill);
      fill += take;
      v = v.subarray(take);
      if (fill === unit) await flush();
    }
    o.onProgress({ phase: 'download', loaded: offset + fill, total: total || offset + fill, component: 'network' });
  }
  if (fill > 0) await flush();
  if (o.manifest && offset !== o.manifest.size) {
    throw new TabfitError('corrupt_data', `${o.url}: got ${offset} bytes, the manifest says ${o.manifest.size}`);
  }
  if (total && offset !== total) {
    throw new TabfitError('network', `${o.url}: got ${offset} of ${total} bytes; the download was cut short, load again`);
  }
  return { size: offset, etag: resp.headers.get('etag'), hashes };
}

/** tabfit package manifest (src/model/package/package.h): the chunks' concatenation is a GGUF. */
interface PackageManifest {
  format: string;
  version: number;
  gguf: { size: number };
  chunks: { file: string; offset: number; size: number; sha256: string; components?: string[] }[];
}

export function isPackageUrl(url: string): boolean {
  return /\/manifest\.json(\?.*)?$/.test(new URL(url).pathname + new URL(url).search);
}

async function fetchChecked(url: string, signal: AbortSignal): Promise<Response> {
  let resp: Response;
  try {
    resp = await fetch(url, { signal });
  } catch (e) {
    throwIfAborted(signal, `download of ${url}`);
    throw new TabfitError('network', `${url}: fetch failed (${(e as Error).message}); check the URL, ` +
      'that the server is running and that it allows this origin (CORS / Cross-Origin-Resource-Policy)');
  }
  if (!resp.ok || !resp.body) {
    throw new TabfitError(resp.status === 404 ? 'not_found' : 'network',
      `${url}: HTTP ${resp.status} ${resp.statusText}; check the model URL`);
  }
  return resp;
}

async function fetchPackageManifest(url: string, signal: AbortSignal): Promise<PackageManifest> {
  const resp = await fetchChecked(url, signal);
  let m: PackageManifest;
  try {
    m = await resp.json();
  } catch (e) {
    throwIfAborted(signal, `download of ${url}`);
    throw new TabfitError('corrupt_data', `${url}: not JSON (${(e as Error).message}); point load() at a package's manifest.json`);
  }
  if (m?.format !== 'tabfit-package' || !Array.isArray(m.chunks) || !(m.gguf?.size >= 0)) {
    throw new TabfitError('corrupt_data', `${url}: not a tabfit package manifest (format "${m?.format}")`);
  }
  if (m.version > 1) {
    throw new TabfitError('unsupported', `${url}: package format version ${m.version} is newer than this tabfit (1); update tabfit`);
  }
  let off = 0;
  for (const [i, c] of m.chunks.entries()) {
    if (c.offset !== off || !(c.size >= 0) || typeof c.file !== 'string' || !/^[0-9a-f]{64}$/i.test(c.sha256)) {
      throw new TabfitError('corrupt_data', `${url}: chunk ${i} (${c.file}) is malformed or not contiguous ` +
        `(offset ${c.offset}, expected ${off}); rewrite the package with tabfit convert`);
    }
    off += c.size;
  }
  if (off !== m.gguf.size) {
    throw new TabfitError('corrupt_data', `${url}: chunks add up to ${off} bytes, the manifest says ${m.gguf.size}`);
  }
  return m;
}

/** Fetches each package chunk (one request per chunk file), checks its sha256, hands it to `sink`. */
async function streamPackage(o: FetchOptions, m: PackageManifest, maxBuffer: number,
  sink: (chunk: Uint8Array, offset: number, index: number) => void): Promise<number> {
  let done = 0;
  for (const [i, c] of m.chunks.entries()) {
    if (c.size > maxBuffer) {
      throw new TabfitError('buffer_limit', `${o.url}: chunk ${c.file} is ${c.size} bytes, more than the profile's ` +
        `max buffer (${maxBuffer}); rewrite the package with tabfit convert --max-chunk ${maxBuffer}`);
    }
    const url = new URL(c.file, o.url).toString();
    const resp = await fetchChecked(url, o.signal);
    const buf = new Uint8Array(c.size);
    let fill = 0;
    const reader = resp.body!.getReader();
    const component = c.components?.join(',') || c.file;
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        throwIfAborted(o.signal, `download of ${url}`);
        throw new TabfitError('network', `${url}: the download broke off (${(e as Error).message}); load again`);
      }
      if (r.done) break;
      if (fill + r.value.length > c.size) {
        throw new TabfitError('corrupt_data', `${url}: longer than the ${c.size} bytes the manifest says`);
      }
      buf.set(r.value, fill);
      fill += r.value.length;
      o.onProgress({ phase: 'download', loaded: done + fill, total: m.gguf.size, component });
    }
    if (fill !== c.size) {
      throw new TabfitError('corrupt_data', `${url}: got ${fill} bytes, the manifest says ${c.size}; load again`);
    }
    const got = await sha256Hex(buf);
    if (got !== c.sha256.toLowerCase()) {
      throw new TabfitError('corrupt_data', `${url}: sha256 is ${got}, the manifest says ${c.sha256}; the chunk ` +
        'is damaged or from another package version — clear the server cache or rewrite the package');
    }
    sink(buf, c.offset, i);
    done += c.size;
  }
  o.onProgress({ phase: 'download', loaded: done, total: m.gguf.size, component: 'network' });
  return done;
}

// The largest bounce buffer OpfsBytes keeps for heaps a sync handle cannot read into.
const COPY_BYTES = 4 << 20;

class OpfsBytes implements ModelBytes {
  readonly storage = 'opfs' as const;
  readonly rereadable = true;
  private closed = false;
  private copyBuf: Uint8Array | null = null;
  private directOk = true;
  constructor(readonly name: string, readonly size: number, private handle: SyncAccessHandle,
    readonly fromCache: boolean, readonly networkBytes: number) {}
  read(offset: number, dst: number, n: number, heap: Uint8Array): void {
    if (this.closed) throw new Error(`${this.name}: the stored copy was closed (the engine was unloaded)`);
    let done = 0;
    while (done < n) {
      const want = Math.min(n - done, this.directOk ? 64 << 20 : COPY_BYTES);
      let got: number;
      if (this.directOk) {
        try {
          got = this.handle.read(heap.subarray(dst + done, dst + done + want), { at: offset + done });
        } catch (e) {
          // Some engines refuse views on a SharedArrayBuffer (the threads build's heap).
          if (!(e instanceof TypeError)) throw e;
          this.directOk = false;
          continue;
        }
      } else {
        if (!this.copyBuf || this.copyBuf.length < want) this.copyBuf = new Uint8Array(want);
        const tmp = this.copyBuf.subarray(0, want);
        got = this.handle.read(tmp, { at: offset + done });
        heap.set(tmp.subarray(0, got), dst + done);
      }
      if (got <= 0) throw new Error(`${this.name}: stored copy ends at ${offset + done} (size ${this.size})`);
      done += got;
    }
  }
  tensorPhase(): void {}
  heldChunks(): number { return 0; }
  retain(): void {}
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { this.handle.close(); } catch { /* already closed */ }
    this.copyBuf = null;
  }
}

// Chunks held in JS memory. A chunk is released once the loader has read all of
// it — apart from gaps of at most MAX_PADDING bytes, which are the alignment
// padding between tensors that no one reads — and the tensor phase has begun
// (the header is parsed twice before that). The loader's order does not matter
// (a package stores tensors in load-priority order, not the loader's).
const MAX_PADDING = 64;

class MemoryChunks implements ModelBytes {
  readonly storage = 'memory' as const;
  readonly fromCache = false;
  readonly rereadable = false;
  private tensors = false;
  private retained = false;
  private covered: [number, number][][];  // per chunk: merged [begin, end) ranges read, chunk-relative
  constructor(readonly name: string, readonly size: number, private chunks: (Uint8Array | null)[],
    private starts: number[], readonly networkBytes: number) {
    this.covered = chunks.map(() => []);
  }
  read(offset: number, dst: number, n: number, heap: Uint8Array): void {
    let i = this.find(offset);
    let done = 0;
    const touched: number[] = [];
    while (done < n) {
      const c = this.chunks[i];
      if (!c) {
        throw new Error(`${this.name}: chunk ${i} was already released (the model's bytes are not kept in JS ` +
          'after loading); to read layers again, load from a URL with cache: true (OPFS) or a Blob, or pass ' +
          'unloadUnusedLayers: true');
      }
      const at = offset + done - this.starts[i];
      const take = Math.min(n - done, c.length - at);
      heap.set(c.subarray(at, at + take), dst + done);
      this.cover(i, at, at + take);
      touched.push(i);
      done += take;
      i++;
    }
    if (this.tensors) for (const k of touched) this.maybeRelease(k);
  }
  private cover(i: number, b: number, e: number): void {
    const list = this.covered[i];
    list.push([b, e]);
    list.sort((x, y) => x[0] - y[0]);
    const merged: [number, number][] = [];
    for (const r of list) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]); else merged.push([r[0], r[1]]);
    }
    this.covered[i] = merged;
  }
  private maybeRelease(i: number): void {
    const c = this.chunks[i];
    if (!c || this.retained) return;
    let pos = 0;
    for (const [b, e] of this.covered[i]) {
      if (b - pos > MAX_PADDING) return;
      pos = e;
    }
    if (c.length - pos > MAX_PADDING) return;
    this.chunks[i] = null;
    this.covered[i] = [];
  }
  private find(offset: number): number {
    let lo = 0, hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= offset) lo = mid; else hi = mid - 1;
    }
    return lo;
  }
  heldChunks(): number { return this.chunks.filter((c) => c !== null).length; }
  retain(): void { this.retained = true; }
  tensorPhase(): void {
    if (this.tensors) return;
    this.tensors = true;
    for (let i = 0; i < this.chunks.length; i++) this.maybeRelease(i);
  }
  close(): void { this.chunks = []; }
}

class BlobBytes implements ModelBytes {
  readonly storage = 'memory' as const;
  readonly rereadable = true;
  readonly fromCache = true;
  readonly networkBytes = 0;
  // FileReaderSync exists only in workers (not in the DOM lib's types).
  private reader = new (globalThis as unknown as {
    FileReaderSync: new () => { readAsArrayBuffer(b: Blob): ArrayBuffer };
  }).FileReaderSync();
  constructor(readonly name: string, private blob: Blob) {}
  get size(): number { return this.blob.size; }
  read(offset: number, dst: number, n: number, heap: Uint8Array): void {
    for (let done = 0; done < n;) {
      const take = Math.min(n - done, 64 << 20);
      const part = this.reader.readAsArrayBuffer(this.blob.slice(offset + done, offset + done + take));
      heap.set(new Uint8Array(part), dst + done);
      done += take;
    }
  }
  tensorPhase(): void {}
  heldChunks(): number { return 0; }
  retain(): void {}
  close(): void {}
}

/** Model bytes already in memory (an ArrayBuffer the caller transferred). */
export function bytesFromBuffer(name: string, buffer: ArrayBuffer, chunkBytes: number): ModelBytes {
  const chunks: Uint8Array[] = [];
  const starts: number[] = [];
  for (let off = 0; off < buffer.byteLength; off += chunkBytes) {
    starts.push(off);
    chunks.push(new Uint8Array(buffer, off, Math.min(chunkBytes, buffer.byteLength - off)));
  }
  if (chunks.length === 0) { chunks.push(new Uint8Array(0)); starts.push(0); }
  return new MemoryChunks(name, buffer.byteLength, chunks, starts, 0);
}

export function bytesFromBlob(name: string, blob: Blob): ModelBytes {
  return new BlobBytes(name, blob);
}

/** Fetches (or finds in OPFS) the model at o.url. */
export async function openUrl(o: FetchOptions): Promise<ModelBytes> {
  const chunkBytes = Math.max(4096, Math.floor(o.chunkBytes));
  const maxBuffer = Math.max(chunkBytes, Math.floor(o.maxBufferBytes ?? chunkBytes));
  checkManifest(o.manifest, maxBuffer);
  if (o.manifest && isPackageUrl(o.url)) {
    throw new TabfitError('invalid_argument', `${o.url}: a tabfit package carries its own hashes; drop the manifest option`);
  }
  const dir = o.cache ? await opfsDir() : null;
  if (dir) {
    const key = await keyFor(o.url);
    const rec = await readRecord(dir, key);
    const manifestMatches = !o.manifest ||
      (rec?.sha256 != null && rec.chunk_bytes === o.manifest.chunk_bytes &&
       rec.sha256.join() === o.manifest.sha256.map((s) => s.toLowerCase()).join());
    if (rec && rec.complete && rec.url === o.url && manifestMatches) {
      const fh = (await dir.getFileHandle(`${key}.bin`)) as SyncFileHandle;
      let h: SyncAccessHandle;
      try {
        h = await fh.createSyncAccessHandle({ mode: 'read-only' });
      } catch {
        try {
          h = await fh.createSyncAccessHandle();
        } catch (e) {
          throw new TabfitError('io', `${o.url}: the stored copy is open in another engine (${(e as Error).message}); ` +
            'unload that engine (or close the other tab) first, or load with cache: false');
        }
      }
      if (h.getSize() === rec.size) {
        o.onProgress({ phase: 'cache', loaded: rec.size, total: rec.size, component: 'storage' });
        return new OpfsBytes(o.name, rec.size, h, true, 0);
      }
      h.close();  // size mismatch: stored copy is damaged; fetch again
    }
    const pkg = isPackageUrl(o.url) ? await fetchPackageManifest(o.url, o.signal) : null;
    const fh = (await dir.getFileHandle(`${key}.bin`, { create: true })) as SyncFileHandle;
    let h: SyncAccessHandle;
    try {
      h = await fh.createSyncAccessHandle();
    } catch (e) {
      throw new TabfitError('io', `${o.url}: the stored copy is open elsewhere (${(e as Error).message}); ` +
        'unload the other engine or close the other tab, then load again');
    }
    try {
      await dir.removeEntry(`${key}.json`).catch(() => {});
      h.truncate(0);
      const write = (chunk: Uint8Array, offset: number) => {
        if (h.write(chunk, { at: offset }) !== chunk.length) {
          throw new TabfitError('io', `${o.url}: storage refused ${chunk.length} bytes at ${offset} ` +
            '(quota?); free space with clearCache() or use cache: false');
        }
      };
      const got = pkg
        ? { size: await streamPackage(o, pkg, maxBuffer, write), etag: null, hashes: pkg.chunks.map((c) => c.sha256) }
        : await streamChunks(o, chunkBytes, write);
      h.flush();
      await writeRecord(dir, key, {
        url: o.url, size: got.size, chunk_bytes: o.manifest?.chunk_bytes ?? chunkBytes, sha256: got.hashes,
        complete: true, etag: got.etag, stored_at: new Date().toISOString(),
      });
      // The engine may keep the copy open until it unloads (streamed layers): reopen it read-only, so other
      // engines (tabs) can open the same stored model meanwhile.
      h.close();
      h = await fh.createSyncAccessHandle({ mode: 'read-only' }).catch(() => fh.createSyncAccessHandle());
      return new OpfsBytes(o.name, got.size, h, false, got.size);
    } catch (e) {
      try { h.close(); } catch { /* already closed */ }
      await dir.removeEntry(`${key}.bin`).catch(() => {});
      throw e;
    }
  }
  const chunks: Uint8Array[] = [];
  const starts: number[] = [];
  const pkg = isPackageUrl(o.url) ? await fetchPackageManifest(o.url, o.signal) : null;
  const keep = (chunk: Uint8Array, offset: number) => {
    chunks.push(pkg ? chunk : chunk.slice());  // streamChunks reuses its buffer; streamPackage does not
    starts.push(offset);
  };
  const got = pkg ? { size: await streamPackage(o, pkg, maxBuffer, keep) } : await streamChunks(o, chunkBytes, keep);
  if (chunks.length === 0) { chunks.push(new Uint8Array(0)); starts.push(0); }
  return new MemoryChunks(o.name, got.size, chunks, starts, got.size);
}

/** Removes stored models: one URL, or all when url is undefined. Returns how many were removed. */
export async function clearStored(url?: string): Promise<number> {
  const dir = await opfsDir();
  return dir ? clearStoredIn(dir, url) : 0;
}

/** Same, in a given directory (usable on the page's main thread too: only async OPFS calls). */
export async function clearStoredIn(dir: FileSystemDirectoryHandle, url?: string): Promise<number> {
  const keys: string[] = [];
  if (url !== undefined) {
    keys.push(await keyFor(url));
  } else {
    for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
      if (name.endsWith('.json')) keys.push(name.slice(0, -5));
    }
  }
  let removed = 0;
  let inUse = 0;
  for (const k of keys) {
    let had = false, busy = false;
    // The file first: an engine that streams layers from it keeps it open (and locked) until it unloads.
    await dir.removeEntry(`${k}.bin`).then(() => { had = true; },
      (e) => { busy = (e as DOMException)?.name === 'NoModificationAllowedError'; });
    if (busy) { inUse++; continue; }
    await dir.removeEntry(`${k}.json`).then(() => { had = true; }, () => {});
    if (had) removed++;
  }
  if (inUse) {
    throw new TabfitError('io', `clearCache: ${inUse} stored model(s) are open in a running engine (which reads ` +
      `layers from them) and were kept; ${removed} removed. Unload those engines first, then clear again`);
  }
  return removed;
}
