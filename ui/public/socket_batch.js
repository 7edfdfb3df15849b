// The chat's socket messages, handed to Chainlit's client in batches: one re-render per batch.
//
// Chainlit's client re-renders the chat synchronously for every socket message it receives
// (a step opened or closed, an element, the answer, the turn's end). On a 2-core machine each
// re-render takes 30-100 ms, so the ten-odd messages the server sends within ~80 ms at a turn's
// end reached the screen one by one, ~400 ms after the server had sent the last
// (benchmarks/ui.py). Here the messages that arrived while the page was busy are handed over
// together in one task, and React renders once for all of them. Nothing is dropped, reordered
// or held back longer than one pass of the event loop.
(() => {
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
    const channel = new MessageChannel();
    channel.port1.onmessage = flush;
    return (ev) => {
      queue.push(ev);
      if (queue.length === 1) channel.port2.postMessage(null);
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
