// A small static file server for the browser tests: serves the repository
// root on 127.0.0.1 with COOP/COEP (so pages are cross-origin isolated and the
// threads build can run), supports Range, and counts requests and bytes per path.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm', '.gguf': 'application/octet-stream',
};

// mounts: { '/pkg/': '/some/dir' } serves other folders under a URL prefix.
export async function startServer(root, { isolate = true, mounts = {} } = {}) {
  const stats = new Map();  // path -> { requests, bytes }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const rel = decodeURIComponent(url.pathname);
    const mount = Object.keys(mounts).find((m) => rel.startsWith(m));
    const base = mount ? mounts[mount] : root;
    const file = path.join(base, mount ? rel.slice(mount.length) : rel);
    if (!file.startsWith(base)) { res.writeHead(403).end(); return; }
    const st = stats.get(rel) ?? { requests: 0, bytes: 0 };
    stats.set(rel, st);
    st.requests++;
    const headers = {
      'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'Cache-Control': 'no-store',
      'Cross-Origin-Resource-Policy': 'same-origin',
    };
    if (isolate) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
    }
    fs.stat(file, (err, info) => {
      if (err || !info.isFile()) { res.writeHead(404, headers).end('not found'); return; }
      let start = 0, end = info.size - 1, status = 200;
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (m) {
        start = Number(m[1]);
        end = m[2] ? Math.min(Number(m[2]), end) : end;
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`;
      }
      headers['Content-Length'] = String(end - start + 1);
      headers['Accept-Ranges'] = 'bytes';
      res.writeHead(status, headers);
      if (req.method === 'HEAD') { res.end(); return; }
      const stream = fs.createReadStream(file, { start, end });
      stream.on('data', (c) => { st.bytes += c.length; });
      stream.pipe(res);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    stats,
    count(p) { return { ...(stats.get(p) ?? { requests: 0, bytes: 0 }) }; },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}
