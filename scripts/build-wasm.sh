#!/usr/bin/env bash
# Builds aioloop's npm package (the JS API, src/js/) into pkg/:
#
#   pkg/web/aioloop.js   ES module for browsers and bundlers:
#                          import init, { newEventLoop } from './pkg/web/aioloop.js';
#                          await init();
#   pkg/node/aioloop.js  CommonJS for Node:  const aioloop = require('./pkg/node/aioloop.js');
#   pkg/package.json     one npm package: `import 'aioloop'` picks node/ on Node and
#                        web/ elsewhere; 'aioloop/web' and 'aioloop/node' name one
#   pkg/*/aioloop.d.ts   the TypeScript types
#
#   ./scripts/build-wasm.sh            release build (what the package ships)
#   ./scripts/build-wasm.sh --dev      debug build (faster to build, slower to run)
#
# Needs rustup's toolchain and network access to crates.io the first time: it
# adds the wasm32-unknown-unknown target and installs the wasm-bindgen CLI whose
# version equals the wasm-bindgen crate pinned in Cargo.toml (about 3 minutes,
# once), unless that exact version is already on PATH. No wasm-opt is run
# (Debian's binaryen 108 corrupts externref tables).
set -euo pipefail

profile=release
for arg in "$@"; do
    case "$arg" in
        --dev) profile=dev ;;
        -h | --help)
            sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build-wasm.sh: unknown argument '$arg' (try --dev or --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=wasm32-unknown-unknown
# The one place that knows the pinned version: Cargo.toml's `wasm-bindgen = "=X"`.
WBG_VERSION=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml | head -1)
if [ -z "$WBG_VERSION" ]; then
    echo "build-wasm.sh: Cargo.toml pins no wasm-bindgen version (expected wasm-bindgen = \"=X.Y.Z\")" >&2
    exit 1
fi

if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$WBG_VERSION" ]; then
    echo "build-wasm.sh: installing wasm-bindgen-cli $WBG_VERSION (found '${have:-none}'; takes a few minutes, once)"
    cargo install wasm-bindgen-cli --version "$WBG_VERSION"
fi

if [ "$profile" = release ]; then
    cargo rustc -p aioloop --lib --release --target "$TARGET" --features js --crate-type cdylib
    wasm="target/$TARGET/release/aioloop.wasm"
else
    cargo rustc -p aioloop --lib --target "$TARGET" --features js --crate-type cdylib
    wasm="target/$TARGET/debug/aioloop.wasm"
fi

rm -rf pkg
wasm-bindgen --target web --out-dir pkg/web --out-name aioloop "$wasm"
wasm-bindgen --target nodejs --out-dir pkg/node --out-name aioloop "$wasm"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > pkg/package.json <<JSON
{
  "name": "aioloop",
  "version": "$version",
  "description": "Python asyncio's event loop and event loop policies for JS, in Rust/WebAssembly: host-driven loops, timers, tasks, per-context loops.",
  "license": "MIT OR Apache-2.0",
  "files": ["web/", "node/", "README.md"],
  "main": "./node/aioloop.js",
  "module": "./web/aioloop.js",
  "types": "./web/aioloop.d.ts",
  "exports": {
    ".": {
      "node": { "types": "./node/aioloop.d.ts", "default": "./node/aioloop.js" },
      "default": { "types": "./web/aioloop.d.ts", "default": "./web/aioloop.js" }
    },
    "./web": { "types": "./web/aioloop.d.ts", "default": "./web/aioloop.js" },
    "./node": { "types": "./node/aioloop.d.ts", "default": "./node/aioloop.js" }
  },
  "sideEffects": ["./web/snippets/*", "./node/snippets/*"],
  "keywords": ["asyncio", "event-loop", "wasm", "scheduler", "timers"]
}
JSON
cp README.md pkg/README.md
# wasm-bindgen's own package.json files would shadow the package's fields.
rm -f pkg/web/package.json pkg/node/package.json pkg/web/.gitignore pkg/node/.gitignore

# Smoke test: the Node build loads and runs a callback, a timer and a task.
node -e '
const a = require("./pkg/node/aioloop.js");
const lp = a.newEventLoop();
const seen = [];
lp.callSoon(() => seen.push("soon"));
lp.callLater(1, () => seen.push("later"));
lp.createTask(async () => { await lp.sleep(2); return 42; }).then((v) => {
  if (v !== 42 || seen.join() !== "soon,later") { console.error("pkg smoke test failed", v, seen); process.exit(1); }
  lp.close();
  console.log("build-wasm.sh: pkg/node smoke test ok");
}, (e) => { console.error(e); process.exit(1); });
'
ls -l pkg/web/aioloop_bg.wasm pkg/node/aioloop_bg.wasm
echo "build-wasm.sh: built pkg/ ($profile): web/ and node/ with TypeScript types"
