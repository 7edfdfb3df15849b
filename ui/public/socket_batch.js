// The chat's socket messages, handed to Chainlit's client in batches: one re-render per batch.
//
// Chainlit's client re-renders the chat synchronously for every socket message it receives
// (a step opened or closed, an element, the answer, the turn's end). On a 2-core machine each
// re-render takes 30-100 ms, so the ten-odd messages the server sends within a few ms at a
// turn's end reached the screen one by one, ~400 ms after the server had sent the last
// (benchmarks/ui.py). Here a message waits at most BATCH_MS for those that follow it, and
// they are handed over together in one task: React renders once for all of them. Nothing is
// dropped or reordered. (A hidden tab's timers run at most once a second: messages then wait
// up to that long, which the socket's heartbeat allows.)
(() => {
  const BATCH_MS = 20; // above the spread of a turn's end as it leaves the server (ui/stream.py)
  const TURN_END = /^42(\/[^,]*,)?\["task_end"/; // Socket.IO's event packet, any namespace
  const native = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
  if (!native || !native.set) return; // an unusual browser: leave the socket as it is
  const handlers = new WeakMap();

  function batched(ws, handler) {
    let queue = [];
    const flush = () => {
      const events = queue;
      queue = [];
      for (const ev of events) {
        try {
          handler.call(ws, ev);
        } catch (err) {
          setTimeout(() => { throw err; }); // reported as the unbatched handler's would be
        }
      }
    };
    let timer = null;
    return (ev) => {
      queue.push(ev);
      if (typeof ev.data === "string" && TURN_END.test(ev.data)) {
        clearTimeout(timer); // the last message of a turn: nothing more to wait for
        timer = null;
        flush();
      } else if (timer === null) {
        timer = setTimeout(() => { timer = null; flush(); }, BATCH_MS);
      }
    };
  }

  Object.defineProperty(WebSocket.prototype, "onmessage", {
    configurable: true,
    enumerable: native.enumerable,
    get() {
      return handlers.get(this) ?? null;
    },
    set(handler) {
      handlers.set(this, handler);
      native.set.call(this, typeof handler === "function" ? batched(this, handler) : handler);
    },
  });
})();
