// aioloop's JS API on Node: the same package as the page (pkg/node/).
//
//   ./scripts/build-wasm.sh && node www/node-demo.mjs
//
// Two "requests", each a host context with its own loop under the
// hostContext policy, run callbacks, timers and tasks; then stop/start,
// a throwing callback, close, and a policy swap. It prints each loop's
// figures (lp.stats()) and checks what it prints: any surprise exits 1.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkgPath = resolve(here, '..', 'pkg', 'node', 'aioloop.js');
const require = createRequire(import.meta.url);
let aio;
try {
    aio = require(pkgPath);
} catch (e) {
    console.error(`node-demo: cannot load ${pkgPath} (${e.message}); build it with ./scripts/build-wasm.sh`);
    process.exit(1);
}
const {
    EventLoopPolicy, setEventLoopPolicy, getEventLoopPolicy, withContext, currentContext,
    getEventLoop, setEventLoop, newEventLoop, getRunningLoop,
} = aio;

let failures = 0;
function check(cond, what) {
    console.log(`  ${cond ? 'ok  ' : 'FAIL'} ${what}`);
    if (!cond) failures++;
}
/** Runs f, returns the JS Error it throws (or null). */
function thrownBy(f) {
    try {
        f();
        return null;
    } catch (e) {
        return e;
    }
}
const describe = (e) => (e ? `${e.name} (kind ${e.kind}): ${e.message}` : 'nothing thrown');
const realSleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Waits until cond() holds (checked every millisecond), at most `ms`:
 * no check depends on how fast this machine is. */
async function waitFor(cond, ms = 5000) {
    const t0 = performance.now();
    while (!cond() && performance.now() - t0 < ms) await realSleep(1);
    return cond();
}
function figures(lp) {
    const st = lp.stats();
    const s = st.toJSON();
    st.free();
    return s;
}

// ---------------------------------------------------------------- policy

console.log('1. policy hostContext: one loop per host context');
setEventLoopPolicy(EventLoopPolicy.hostContext());
check(getEventLoopPolicy().kind === 'hostContext', `getEventLoopPolicy().kind is '${getEventLoopPolicy().kind}'`);
const REQUESTS = [101, 202];
const loops = new Map();
for (const id of REQUESTS) {
    withContext(id, () => {
        const e = thrownBy(() => getEventLoop());
        check(e?.kind === 'NoCurrentLoop', `context ${id}: getEventLoop() before setEventLoop is ${e?.name}`);
        setEventLoop(newEventLoop());
        loops.set(id, getEventLoop());
        check(currentContext() === id, `inside withContext(${id}) currentContext() is ${currentContext()}`);
    });
}
const [lpA, lpB] = REQUESTS.map((id) => loops.get(id));
check(!lpA.equals(lpB), `the two contexts have different loops (${lpA.loopId}, ${lpB.loopId})`);
check(withContext(101, () => getEventLoop().equals(lpA)), 'withContext(101) gives back the same loop');
const noCtx = thrownBy(() => getEventLoop());
check(noCtx?.name === 'NoContextError', `outside any context: ${describe(noCtx)}`);

// ---------------------------------------------------------------- work

console.log('2. callbacks, timers and tasks on both loops');
const order = [];
const handled = [];
for (const [id, lp] of loops) {
    lp.setExceptionHandler((ctx) => handled.push({ loop: id, error: ctx.error, thrown: ctx.thrown }));
    lp.callSoon(() => order.push(`${id}:soon`));
    for (const ms of [15, 5, 10]) lp.callLater(ms, () => order.push(`${id}:later${ms}`));
}
// A task per request: it sees its own loop as the running loop.
const tasks = [...loops].map(([id, lp]) =>
    lp.createTask(async () => {
        const running = getRunningLoop();
        const mine = running.equals(lp);
        let slept = 0;
        for (let i = 0; i < 5; i++) {
            await lp.sleep(4);
            slept++;
        }
        return { id, mine, slept };
    }),
);
const results = await Promise.all(tasks);
for (const r of results) {
    check(r.mine && r.slept === 5, `task of context ${r.id}: getRunningLoop() was its loop, slept 5 times`);
}
await waitFor(() => order.filter((x) => x.startsWith('101')).length >= 4);
const wantA = ['101:soon', '101:later5', '101:later10', '101:later15'];
check(JSON.stringify(order.filter((x) => x.startsWith('101'))) === JSON.stringify(wantA),
    `loop 101 ran callSoon then timers in deadline order: ${order.filter((x) => x.startsWith('101')).join(' ')}`);

// A burst: 50k callbacks at once run in budgeted slices, yielding to Node.
let burstDone = 0;
for (let i = 0; i < 50000; i++) lpA.callSoon(() => {
    let x = 0;
    for (let k = 0; k < 2000; k++) x += Math.sqrt(k); // ~1 µs: the burst takes far more than 5 ms
    burstDone += x > 0 ? 1 : 0;
});
while (burstDone < 50000) await new Promise((r) => setImmediate(r));
const fa = figures(lpA);
check(fa.budgetYields > 0, `50k-callback burst: ${fa.budgetYields} ticks hit the ${lpA.tickBudget} ms budget and yielded (${lpA.yieldKind})`);

// ---------------------------------------------------------------- errors

console.log('3. a throwing callback, stop/start, close');
lpB.callSoon(() => {
    throw new TypeError('a deliberate error in a callback');
});
let after = false;
lpB.callSoon(() => {
    after = true;
});
await waitFor(() => after && handled.some((x) => x.loop === 202));
const h = handled.find((x) => x.loop === 202);
check(h?.error?.name === 'PanickedError' && h?.thrown instanceof TypeError,
    `the exception handler got ${h?.error?.name} (kind ${h?.error?.kind}) with the thrown ${h?.thrown?.name}`);
check(after, 'the loop ran the next callback after the throw');

lpB.stop();
let fired = false;
lpB.callLater(2, () => {
    fired = true;
});
await realSleep(30);
check(lpB.isStopped() && !fired, 'a stopped loop fires no timer (30 ms later)');
lpB.start();
await waitFor(() => fired);
check(fired, 'start() resumes it: the timer fired');

const pending = lpB.createTask(() => lpB.sleep(60000));
await realSleep(1);
lpB.close();
check(lpB.isClosed(), 'close(): isClosed() is true');
const closed = thrownBy(() => lpB.callSoon(() => {}));
check(closed?.name === 'ClosedError' && closed?.kind === 'Closed', `callSoon on a closed loop: ${describe(closed)}`);
const rejected = await pending.then(() => null, (e) => e);
check(rejected?.kind === 'Closed', `a task pending at close() rejects: ${describe(rejected)}`);

// ---------------------------------------------------------------- figures

console.log('4. the loops\' figures');
const rows = {};
for (const [id, lp] of loops) {
    const s = figures(lp);
    rows[`context ${id} (loop ${lp.loopId})`] = {
        state: lp.isClosed() ? 'closed' : lp.isStopped() ? 'stopped' : 'active',
        callbacks: s.callbacks,
        timersFired: s.timersFired,
        'late mean ms': Number(s.lateMeanMs.toFixed(3)),
        'late max ms': Number(s.lateMaxMs.toFixed(3)),
        budgetYields: s.budgetYields,
        turns: s.turns,
    };
}
console.table(rows);
const sa = figures(lpA);
check(sa.callbacks >= 50000 && sa.timersFired >= 8, `loop 101 ran ${sa.callbacks} callbacks and fired ${sa.timersFired} timers`);
check(sa.lateMaxMs >= sa.lateMeanMs && sa.lateMeanMs >= 0, 'lateness: max >= mean >= 0');

// ---------------------------------------------------------------- swap

console.log('5. swap to the default policy: one current loop, no context needed');
lpA.close();
setEventLoopPolicy(EventLoopPolicy.default());
const none = thrownBy(() => getEventLoop());
check(none?.name === 'NoCurrentLoopError', `default policy, nothing set: ${describe(none)}`);
const shared = newEventLoop();
setEventLoop(shared);
check(withContext(101, () => getEventLoop()).equals(withContext(202, () => getEventLoop())),
    'both contexts now get the same loop');
check((await shared.createTask(async () => 6 * 7)) === 42, 'a task on it returns 42');
shared.close();

console.log(failures === 0 ? 'node-demo: all checks ok' : `node-demo: ${failures} check(s) FAILED`);
process.exitCode = failures === 0 ? 0 : 1;
