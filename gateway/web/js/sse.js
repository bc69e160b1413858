// Server-sent events over fetch(): EventSource cannot send an Authorization header, and the
// gateway's stream routes take the token from that header only (a token in a URL would land in
// access logs and proxies; the gateway refuses `?access_token=`).
// Parses the text/event-stream format (WHATWG HTML §9.2) and resumes with Last-Event-ID.
// The gateway ends a stream when the access token expires (raw() then refreshes it on the
// reconnect) or the session is revoked (the reconnect gets 401: failure), and refuses one over
// its caps with 503 + Retry-After, which is honoured before the next try.

import { raw } from "./api.js";

/** Feed text chunks; calls onEvent({event, data, id}) for each complete event. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
    this.lastEventId = null;
  }

  reset() {
    this.event = "";
    this.data = [];
  }

  push(chunk) {
    this.buffer += chunk;
    // A trailing \r may be the first half of a \r\n split across chunks: keep it for later.
    const held = this.buffer.endsWith("\r") ? "\r" : "";
    const text = held ? this.buffer.slice(0, -1) : this.buffer;
    const lines = text.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + held; // the incomplete last line
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
  }
}

/**
 * Follow an SSE stream until a terminal event. handlers: {progress, result, error, message}
 * each get the parsed JSON data. Reconnects (with Last-Event-ID) when the connection drops.
 * Returns a function that stops following.
 */
export function follow(path, handlers, { terminal = ["result", "error"], maxRetries = 20 } = {}) {
  const ctrl = new AbortController();
  let lastId = null;
  let done = false;
  let retries = 0;

  const dispatch = (ev) => {
    lastId = ev.id ?? lastId;
    let data = ev.data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      /* plain text data */
    }
    retries = 0;
    const fn = handlers[ev.event] || handlers.message;
    if (fn) fn(data, ev);
    if (terminal.includes(ev.event)) {
      done = true;
      ctrl.abort();
    }
  };

  (async () => {
    while (!done && !ctrl.signal.aborted) {
      let ended = false; // the server closed the stream cleanly
      let wait = null; // ms, from a 503's Retry-After
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const res = await raw("GET", path, { headers, signal: ctrl.signal });
        const opened = Date.now();
        const parser = new SseParser(dispatch);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done: eof } = await reader.read();
          if (eof) break;
          parser.push(value);
        }
        parser.push("\n\n"); // flush an event the server ended without a blank line
        // a stream the server ended after a while (token expiry, max_seconds) is routine
        if (Date.now() - opened > 5000) retries = 0;
        ended = true;
      } catch (err) {
        if (ctrl.signal.aborted || done) return;
        if (err?.status && err.status !== 503 && err.status !== 0) {
          done = true;
          handlers.failure?.(err);
          return;
        }
        if (err?.status === 503 && Number(err.retryAfter) > 0) wait = Number(err.retryAfter) * 1000;
      }
      if (done || ctrl.signal.aborted) return;
      retries += 1;
      if (retries > maxRetries) {
        handlers.failure?.(new Error("The progress stream keeps dropping."));
        return;
      }
      const routine = ended && retries === 1; // resumed at once, without a "reconnecting" note
      if (!routine) handlers.reconnecting?.(retries);
      const delay = wait ?? (routine ? 0 : Math.min(500 * retries, 5000));
      await new Promise((r) => setTimeout(r, delay));
    }
  })();

  return () => {
    done = true;
    ctrl.abort();
  };
}
