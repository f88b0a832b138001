// The JS side of aioloop's wasm backend (bundled by wasm-bindgen as a snippet).
//
// Every entry from the host into a loop goes through `guarded`: a panic in
// wasm32 code is a trap (a JS RuntimeError) that unwinds no Rust frames. The
// guard restores the wasm shadow-stack pointer saved before the entry (when
// the module exports `__stack_pointer`), then calls the loop again with kind
// TRAP so that it can repair itself and report the panic. Nothing thrown ever
// escapes into a microtask or timer, where Node would end the process.

const MICROTASK = 0, TIMER = 1, YIELD = 2, TRAP = 3, MANUAL = 4;

let stackPointer = null;

export function aioloop_install(exports) {
    const g = exports && exports.__stack_pointer;
    if (g && typeof g.value === 'number') {
        stackPointer = g;
    }
}

function guarded(entry, kind) {
    return function () {
        const sp = stackPointer === null ? 0 : stackPointer.value;
        try {
            entry(kind, undefined);
            return false;
        } catch (e) {
            if (stackPointer !== null) {
                stackPointer.value = sp;
            }
            try {
                entry(TRAP, e);
            } catch (e2) {
                console.error('aioloop: the event loop could not recover from a trap', e2);
            }
            return true;
        }
    };
}

const resolved = Promise.resolve();

export function aioloop_host(entry) {
    const g = globalThis;
    const micro = guarded(entry, MICROTASK);
    const timer = guarded(entry, TIMER);
    const yld = guarded(entry, YIELD);
    const manual = guarded(entry, MANUAL);
    // Yield to the host with a macrotask that lets it paint and take input:
    // setImmediate on Node (MessageChannel would starve its timers and keep
    // the process alive), a MessageChannel in browsers (no 4 ms clamp).
    let yieldKind;
    let postYield;
    if (typeof g.setImmediate === 'function') {
        yieldKind = 'setImmediate';
        postYield = () => { g.setImmediate(yld); };
    } else if (typeof g.MessageChannel === 'function') {
        yieldKind = 'MessageChannel';
        const channel = new g.MessageChannel();
        channel.port1.onmessage = yld;
        postYield = () => { channel.port2.postMessage(null); };
    } else {
        yieldKind = 'setTimeout';
        postYield = () => { g.setTimeout(yld, 0); };
    }
    return {
        yieldKind,
        microtask() { resolved.then(micro); },
        yieldNow() { postYield(); },
        setTimer(ms) { return g.setTimeout(timer, ms); },
        clearTimer(id) { g.clearTimeout(id); },
        manual() { return manual(); },
    };
}
