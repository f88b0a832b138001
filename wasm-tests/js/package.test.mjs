// The npm package as JS sees it (pkg/node, built by scripts/build-wasm.sh):
// node --test wasm-tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const aioloop = require('../../pkg/node/aioloop.js');
const {
    EventLoop, EventLoopPolicy, newEventLoop, getEventLoop, setEventLoop,
    getEventLoopPolicy, setEventLoopPolicy, getRunningLoop, withContext, currentContext,
} = aioloop;

const until = async (cond, ms = 2000) => {
    const end = performance.now() + ms;
    while (!cond()) {
        if (performance.now() > end) return false;
        await new Promise((r) => setTimeout(r, 1));
    }
    return true;
};

test('callbacks, timers and tasks in order; a Task is awaitable', async () => {
    const lp = new EventLoop();
    const seen = [];
    lp.callLater(15, () => seen.push('later'));
    lp.callSoon(() => seen.push('soon'));
    lp.callAt(lp.time() + 1, () => seen.push('at'));
    const v = await lp.createTask(async () => {
        await lp.sleep(20);
        return 'task';
    });
    assert.equal(v, 'task');
    assert.deepEqual(seen, ['soon', 'at', 'later']);
    const s = lp.stats().toJSON();
    assert.equal(s.timersFired >= 3, true);
    assert.equal(typeof s.lateMaxMs, 'number');
    lp.close();
});

test('failures are Errors with name and kind', async () => {
    setEventLoopPolicy(null);
    assert.throws(() => getEventLoop(), { name: 'NoCurrentLoopError', kind: 'NoCurrentLoop' });
    assert.throws(() => getRunningLoop(), { kind: 'NoRunningLoop' });
    const lp = newEventLoop();
    assert.throws(() => lp.callLater(NaN, () => {}), { name: 'InvalidInputError' });
    assert.throws(() => setEventLoop({}), { kind: 'InvalidInput' });
    const t = lp.createTask(() => new Promise(() => {}));
    assert.equal(t.cancel(), true);
    await assert.rejects(t.promise, { name: 'CancelledError', kind: 'Cancelled' });
    await assert.rejects(async () => { await t; }, { name: 'CancelledError' });
    lp.close();
    assert.throws(() => lp.callSoon(() => {}), { name: 'ClosedError', kind: 'Closed' });
    await assert.rejects(lp.createTask(() => 1).promise, { kind: 'Closed' });
});

test('host-context policy: one loop per withContext id', () => {
    setEventLoopPolicy(EventLoopPolicy.hostContext());
    try {
        assert.equal(getEventLoopPolicy().kind, 'hostContext');
        assert.throws(() => getEventLoop(), { kind: 'NoContext' });
        const a = withContext(1, () => { const lp = newEventLoop(); setEventLoop(lp); return lp; });
        const b = withContext(2, () => { const lp = newEventLoop(); setEventLoop(lp); return lp; });
        assert.equal(a.equals(b), false);
        assert.equal(withContext(1, () => getEventLoop()).equals(a), true);
        assert.equal(withContext(2, () => currentContext()), 2);
        assert.equal(currentContext(), undefined);
        a.close();
        b.close();
    } finally {
        setEventLoopPolicy(null);
    }
});

test('a long burst yields to the host (setImmediate runs in the middle)', async () => {
    const lp = newEventLoop();
    assert.equal(lp.yieldKind, 'setImmediate');
    let ran = 0;
    let seenByHost = -1;
    for (let i = 0; i < 300; i++) {
        lp.callSoon(() => {
            const end = performance.now() + 0.05;
            while (performance.now() < end) { /* 50 µs of work */ }
            ran++;
        });
    }
    setImmediate(() => { seenByHost = ran; });
    assert.equal(await until(() => ran === 300), true);
    assert.ok(seenByHost > 0 && seenByHost < 300, `host ran after ${seenByHost} of 300`);
    assert.ok(lp.stats().budgetYields >= 2);
    lp.close();
});

test('a throwing callback goes to the exception handler; the loop goes on', async () => {
    const lp = newEventLoop();
    const reports = [];
    lp.setExceptionHandler((ctx) => reports.push(ctx));
    const err = new RangeError('nope');
    lp.callSoon(() => { throw err; });
    let after = false;
    lp.callSoon(() => { after = true; });
    assert.equal(await until(() => after), true);
    assert.equal(reports.length, 1);
    assert.equal(reports[0].thrown, err);
    assert.equal(reports[0].error.kind, 'Panicked');
    lp.close();
});

test('tick() pumps a stopped loop', () => {
    const lp = newEventLoop();
    lp.stop();
    let n = 0;
    lp.callSoon(() => n++);
    lp.callSoon(() => n++);
    assert.equal(lp.tick(), 2);
    assert.equal(n, 2);
    assert.equal(lp.isStopped(), true);
    lp.tickBudget = 8;
    assert.equal(lp.tickBudget, 8);
    lp.close();
});

test('cancel() and close() abort the signal a task function receives', async () => {
    const lp = newEventLoop();
    let signal1;
    const t = lp.createTask((signal) => { signal1 = signal; return new Promise(() => {}); });
    assert.equal(await until(() => signal1 !== undefined), true);
    assert.equal(signal1.aborted, false);
    t.cancel();
    await assert.rejects(t.promise, { name: 'CancelledError' });
    assert.equal(signal1.aborted, true);
    assert.equal(signal1.reason.kind, 'Cancelled');

    let signal2;
    const t2 = lp.createTask(async (signal) => { signal2 = signal; await lp.sleep(10_000); });
    assert.equal(await until(() => signal2 !== undefined), true);
    lp.close();
    assert.equal(signal2.aborted, true);
    await assert.rejects(t2.promise, { kind: 'Closed' });

    // A task that finished normally is never aborted.
    const lp2 = newEventLoop();
    let signal3;
    await lp2.createTask((signal) => { signal3 = signal; return 1; });
    lp2.close();
    assert.equal(signal3.aborted, false);
});
