// A tiny static server for the demo (no dependencies):
//
//   node www/serve.mjs [--port 8000] [--host 127.0.0.1]
//
// Serves www/ at / and the package built by scripts/build-wasm.sh (pkg/ at
// the repository root) at /pkg/. `--port 0` picks a free port; the first
// line printed is the URL (the e2e test reads it).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const roots = { '/pkg/': resolve(here, '..', 'pkg'), '/': here };
const types = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.mjs': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.json': 'application/json',
    '.wasm': 'application/wasm',
    '.ts': 'text/plain; charset=utf-8',
    '.png': 'image/png',
    '.svg': 'image/svg+xml',
};

let port = 8000;
let host = '127.0.0.1';
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') port = Number(argv[++i]);
    else if (argv[i] === '--host') host = argv[++i];
    else {
        console.error(`serve.mjs: unknown argument ${argv[i]} (use --port N, --host ADDR)`);
        process.exit(2);
    }
}

/** The file a URL path names, or null when it leaves its root. */
function fileFor(urlPath) {
    for (const [prefix, root] of Object.entries(roots)) {
        if (urlPath.startsWith(prefix)) {
            let rel = decodeURIComponent(urlPath.slice(prefix.length));
            if (rel === '' || rel.endsWith('/')) rel += 'index.html';
            const full = normalize(join(root, rel));
            return full === root || full.startsWith(root + sep) ? full : null;
        }
    }
    return null;
}

const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = fileFor(path);
    try {
        if (!file || !(await stat(file)).isFile()) throw Object.assign(new Error(), { code: 'ENOENT' });
        const body = await readFile(file);
        res.writeHead(200, {
            'content-type': types[extname(file)] ?? 'application/octet-stream',
            'cache-control': 'no-store',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
        const missing = e.code === 'ENOENT' || e.code === 'EISDIR';
        res.writeHead(missing ? 404 : 500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(
            missing
                ? `404 ${path}${path.startsWith('/pkg/') ? ' (pkg/ not built: run ./scripts/build-wasm.sh)' : ''}\n`
                : `500 ${e.message}\n`,
        );
    }
});

server.on('error', (e) => {
    console.error(`serve.mjs: cannot listen on ${host}:${port}: ${e.message}`);
    process.exit(1);
});
server.listen(port, host, () => {
    const a = server.address();
    console.log(`http://${a.address}:${a.port}/`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
