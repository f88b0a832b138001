// The demo page: several panels, each a host context with its own event
// loop obtained through the current policy, running live timers and tasks.
// Everything shown comes from the loops themselves (lp.stats()).
//
// The package is the web build of scripts/build-wasm.sh (pkg/web/), which
// www/serve.mjs serves at /pkg/. '../pkg/' resolves to /pkg/ whether the
// page is served at / (serve.mjs) or at /www/ (a server of the repo root).

const PKG_URL = '../pkg/web/aioloop.js';

const PANELS = [
    { id: 1, title: 'Panel 1 · animation', period: 16, sleepMs: 40, autoBurst: 0 },
    { id: 2, title: 'Panel 2 · clock', period: 100, sleepMs: 250, autoBurst: 0 },
    { id: 3, title: 'Panel 3 · bursty worker', period: 50, sleepMs: 120, autoBurst: 2000 },
];
const BURST = 20000;

const $ = (sel, root = document) => root.querySelector(sel);
/** Frames the page painted (requestAnimationFrame callbacks). */
let frames = 0;
let aio = null;
const panels = [];

// ---------------------------------------------------------------- errors

let errorCount = 0;

/** Shows an error on the page: a JS Error with name/kind, or anything thrown. */
function showError(where, err, context) {
    const li = document.createElement('li');
    li.className = 'error';
    const name = err?.name ?? typeof err;
    const kind = err?.kind ?? '–';
    const message = err?.message ?? String(err);
    li.dataset.name = name;
    li.dataset.kind = kind;
    li.innerHTML = '<span class="where"></span> <b class="name"></b> <span class="kind"></span>: <span class="msg"></span>';
    $('.where', li).textContent = `[${where}]`;
    $('.name', li).textContent = name;
    $('.kind', li).textContent = `(kind ${kind})`;
    $('.msg', li).textContent = context ? `${context}: ${message}` : message;
    const list = $('#errors');
    list.prepend(li);
    while (list.children.length > 12) list.lastElementChild.remove();
    errorCount++;
    $('#errors-box h2').dataset.count = String(errorCount);
}

window.addEventListener('error', (e) => showError('page', e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => showError('page (unhandled rejection)', e.reason));

function setStatus(text, bad = false) {
    const s = $('#status');
    s.textContent = text;
    s.classList.toggle('bad', bad);
}

// ---------------------------------------------------------------- panels

/** A little CPU work for a callback (about a microsecond): a 20k burst
 * takes well over the 5 ms tick budget even on a fast machine. */
let sink = 0;
function work() {
    let x = 0;
    for (let i = 0; i < 1000; i++) x += Math.sqrt(i);
    sink += x;
}

class Panel {
    constructor(cfg) {
        Object.assign(this, cfg);
        this.lp = null;
        this.task = null;
        this.ticks = 0;
        this.steps = 0;
        this.generation = 0;
        this.lastBurst = null;
        const el = $('#panel-template').content.firstElementChild.cloneNode(true);
        el.dataset.panel = String(this.id);
        $('.title', el).textContent = this.title;
        $('[data-fig=context]', el).textContent = String(this.id);
        $('[data-fig=period]', el).textContent = String(this.period);
        for (const b of el.querySelectorAll('button[data-act]')) {
            b.addEventListener('click', () => this.act(b.dataset.act));
        }
        this.el = el;
        $('#panels').append(el);
    }

    /** This panel's loop, through the current policy, in its host context:
     * the policy's current loop here, or a new one made current here. */
    acquire() {
        return aio.withContext(this.id, () => {
            let lp = null;
            try {
                lp = aio.getEventLoop();
            } catch (e) {
                if (e.kind !== 'NoCurrentLoop') throw e;
            }
            if (lp === null || lp.isClosed() || lp.isDead()) {
                lp = aio.newEventLoop();
                aio.setEventLoop(lp);
            }
            return lp;
        });
    }

    /** Starts the panel's live work on its loop: a self-rescheduling timer
     * (callLater), a task that sleeps in a loop (createTask + sleep), and
     * for the bursty panel a task that queues bursts of callbacks. */
    begin() {
        const lp = this.acquire();
        const gen = ++this.generation;
        this.lp = lp;
        this.ticks = 0;
        this.steps = 0;
        this.lastBurst = null;
        lp.setExceptionHandler((ctx) => {
            // What a callback or task threw: ctx.error is the loop's
            // PanickedError (name/kind), ctx.thrown the JS value itself.
            const err = ctx.error ?? {};
            const thrown = ctx.thrown;
            showError(`loop ${lp.loopId}`, {
                name: err.name,
                kind: err.kind,
                message: thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : (err.message ?? String(thrown)),
            }, ctx.message);
        });
        const tick = () => {
            if (this.generation !== gen) return;
            this.ticks++;
            work();
            lp.callLater(this.period, tick);
        };
        lp.callLater(this.period, tick);
        this.task = lp.createTask(async () => {
            for (;;) {
                await lp.sleep(this.sleepMs);
                if (this.generation !== gen) return;
                this.steps++;
                work();
            }
        });
        // A closed loop ends its tasks with ClosedError: expected here;
        // anything else is shown.
        const unexpected = (what) => (e) => {
            if (e?.kind !== 'Closed' && e?.kind !== 'Cancelled') showError(`panel ${this.id} ${what}`, e);
        };
        this.task.then(null, unexpected('task'));
        if (this.autoBurst > 0) {
            lp.createTask(async () => {
                for (;;) {
                    await lp.sleep(this.autoBurst);
                    if (this.generation !== gen) return;
                    this.burst(5000);
                }
            }).then(null, unexpected('burst task'));
        }
    }

    /** Queues n callbacks at once: the loop runs them in budgeted ticks,
     * yielding to the page between slices ("ticks that hit the budget").
     * The last one records how long the burst took and how many frames the
     * page painted meanwhile. */
    burst(n) {
        const lp = this.lp;
        const t0 = performance.now();
        const f0 = frames;
        for (let i = 0; i < n - 1; i++) lp.callSoon(work);
        lp.callSoon(() => {
            work();
            if (this.lp === lp) this.lastBurst = { n, ms: performance.now() - t0, frames: frames - f0 };
        });
    }

    act(what) {
        const lp = this.lp;
        try {
            switch (what) {
                case 'stop':
                    lp.stop();
                    break;
                case 'start':
                    lp.start();
                    break;
                case 'close':
                    lp.close();
                    break;
                case 'restart':
                    if (!lp.isClosed()) lp.close();
                    this.begin();
                    break;
                case 'burst':
                    this.burst(BURST);
                    break;
                case 'throw':
                    lp.callSoon(() => {
                        throw new RangeError(`panel ${this.id}: a deliberate error thrown in a callback`);
                    });
                    break;
                default:
                    throw new Error(`unknown action ${what}`);
            }
        } catch (e) {
            showError(`panel ${this.id} ${what}`, e);
        }
        this.render();
    }

    state() {
        const lp = this.lp;
        if (lp === null) return 'none';
        if (lp.isDead()) return 'dead';
        if (lp.isClosed()) return 'closed';
        if (lp.isStopped()) return 'stopped';
        return 'active';
    }

    render() {
        const lp = this.lp;
        if (lp === null) return;
        const st = lp.stats();
        const s = st.toJSON();
        st.free();
        const fig = (name, text) => {
            $(`[data-fig=${name}]`, this.el).textContent = text;
        };
        const state = this.state();
        const stateEl = $('.state', this.el);
        stateEl.textContent = state;
        stateEl.dataset.state = state;
        this.el.dataset.state = state;
        fig('loopId', String(lp.loopId));
        fig('callbacks', String(s.callbacks));
        fig('timersFired', String(s.timersFired));
        fig('lateness', `${s.lateLastMs.toFixed(2)} / ${s.lateMeanMs.toFixed(2)} / ${s.lateMaxMs.toFixed(2)}`);
        fig('budgetYields', String(s.budgetYields));
        fig('turns', String(s.turns));
        fig('pendingTasks', String(s.pendingTasks));
        fig('own', `${this.ticks} / ${this.steps}`);
        const b = this.lastBurst;
        fig('lastBurst', b ? `${b.n} · ${b.ms.toFixed(0)} ms · ${b.frames} frames` : '–');
    }
}

// ---------------------------------------------------------------- policy

function policyKind() {
    const p = aio.getEventLoopPolicy();
    const kind = p.kind;
    p.free();
    return kind;
}

/** Swaps default <-> hostContext: closes every panel's loop, installs the
 * other policy, and has each panel get its loop through it again. */
function swapPolicy() {
    const next = policyKind() === 'hostContext' ? aio.EventLoopPolicy.default() : aio.EventLoopPolicy.hostContext();
    for (const p of panels) {
        if (p.lp !== null && !p.lp.isClosed()) p.lp.close();
    }
    aio.setEventLoopPolicy(next);
    for (const p of panels) p.begin();
    $('#policy-kind').textContent = policyKind();
    for (const p of panels) p.render();
    setStatus(`policy swapped to ${policyKind()}`);
}

/** asyncio's rule: outside any context the hostContext policy has no loop
 * to give; the default policy gives its one current loop. */
function outsideContext() {
    try {
        const lp = aio.getEventLoop();
        setStatus(`getEventLoop() outside a context: loop ${lp.loopId} (policy ${policyKind()})`);
    } catch (e) {
        setStatus(`getEventLoop() outside a context threw ${e.name}`);
        showError('getEventLoop() outside a context', e);
    }
}

// ---------------------------------------------------------------- start

function frame() {
    frames++;
    requestAnimationFrame(frame);
}

async function main() {
    try {
        aio = await import(PKG_URL);
        await aio.default();
    } catch (e) {
        setStatus(`could not load the aioloop package from ${PKG_URL}: build it with ./scripts/build-wasm.sh`, true);
        showError('loading', e);
        return;
    }
    aio.setEventLoopPolicy(aio.EventLoopPolicy.hostContext());
    $('#policy-kind').textContent = policyKind();
    for (const cfg of PANELS) panels.push(new Panel(cfg));
    for (const p of panels) p.begin();
    $('#swap-policy').addEventListener('click', () => {
        try {
            swapPolicy();
        } catch (e) {
            showError('swap policy', e);
        }
    });
    $('#outside-context').addEventListener('click', outsideContext);
    for (const b of document.querySelectorAll('#policy-bar button')) b.disabled = false;
    const yieldKind = panels[0].lp.yieldKind;
    setStatus(`ready: ${panels.length} panels, loops yield to the page with ${yieldKind}`);
    document.body.dataset.ready = '1';
    requestAnimationFrame(frame);
    setInterval(() => {
        for (const p of panels) p.render();
        $('#frames').textContent = String(frames);
    }, 250);
}

main();
