'use strict';
/**
 * Cryptlet SDK for Node.js: the cryptlet side of the container protocol (docs/container-protocol.md).
 *
 *   const { serve, CryptletError } = require('./cryptlet');
 *   serve({
 *     async greet(args, ctx) {
 *       if (typeof args.name !== 'string') throw CryptletError.badArguments('name must be a string');
 *       await ctx.log(`greeting ${args.name}`);
 *       ctx.emit('Greeted', { name: args.name });
 *       return { greeting: `hello ${args.name}` };
 *     },
 *   });
 *
 * The container (fabric code, holding the key) starts this program, sends one request per line on
 * stdin and reads replies and call-outs on stdout; it signs what a method returns. Copy this file
 * into your package (it is part of what the fabric measures). console.log goes to stderr, so it
 * cannot corrupt the protocol stream.
 */
const readline = require('node:readline');

class CryptletError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }

  static badArguments(message) {
    return new CryptletError('bad_arguments', message);
  }
}

class Context {
  constructor(io, request, kind) {
    this._io = io;
    this.method = request.method;
    this.requestId = request.request_id;
    this.events = [];
    this.state = kind === 'contract' ? structuredClone(request.state || {}) : undefined;
  }

  /** Write to the host log (debug, info, warning, error). */
  log(message, level = 'info') {
    return this._io.callout('log', { message: String(message), level });
  }

  /** The host clock, unix milliseconds. */
  async nowMs() {
    return (await this._io.callout('time', {})).unix_ms;
  }

  /** Report how far this call has come: fraction 0..1 and a short message (GET /api/requests/{id}/progress). */
  progress(fraction, message = '') {
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      return Promise.reject(new CryptletError('cryptlet_error', `progress fraction must be a number from 0 to 1, not ${fraction}`));
    }
    return this._io.callout('progress', { request_id: this.requestId, fraction, message: String(message) });
  }

  /** HTTP through the host, only to the cryptlet's egress allow-list. */
  async fetch(url, { method = 'GET', headers = {}, body, timeoutS } = {}) {
    const params = { url, method, headers };
    if (body !== undefined) params.body_b64 = Buffer.from(body).toString('base64');
    if (timeoutS !== undefined) params.timeout_s = timeoutS;
    const result = await this._io.callout('fetch', params);
    const bytes = Buffer.from(result.body_b64, 'base64');
    return {
      status: result.status, url: result.url, headers: result.headers, body: bytes,
      text: () => bytes.toString('utf8'), json: () => JSON.parse(bytes.toString('utf8')),
    };
  }

  /** Emit an event declared in interface.events; the container signs it as its own envelope. */
  emit(event, fields) {
    this.events.push({ event, fields });
  }
}

function serve(methods) {
  const write = process.stdout.write.bind(process.stdout);
  for (const name of ['log', 'info', 'debug']) console[name] = console.error;  // keep stdout for the protocol
  const send = (message) => write(JSON.stringify(message) + '\n');
  const pending = new Map();
  let calloutIds = 0;
  let kind = 'utility';
  const io = {
    callout(op, params) {
      calloutIds += 1;
      const id = calloutIds;
      send({ callout: id, op, ...params });
      return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    },
  };

  async function handle(request) {
    if (request.op === 'init') {
      kind = request.kind;
      const missing = request.methods.filter((m) => typeof methods[m] !== 'function');
      if (missing.length) throw new CryptletError('load_failed', `methods not implemented: ${missing.join(', ')}`);
      return {};
    }
    if (request.op === 'invoke') {
      const fn = Object.prototype.hasOwnProperty.call(methods, request.method) ? methods[request.method] : undefined;
      if (typeof fn !== 'function') throw new CryptletError('unknown_method', `no method ${request.method}`);
      const ctx = new Context(io, request, kind);
      const result = await fn(request.args || {}, ctx);
      const reply = { result: result === undefined ? null : result, events: ctx.events };
      if (kind === 'contract') reply.state = ctx.state;
      return reply;
    }
    throw new CryptletError('unknown_op', `unknown operation ${request.op}`);
  }

  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    let message;
    try {
      message = JSON.parse(line);
    } catch (err) {
      process.stderr.write(`cryptlet: unreadable request: ${err.message}\n`);
      process.exit(2);
    }
    if (message.callout !== undefined && message.id === undefined) {
      const waiter = pending.get(message.callout);
      pending.delete(message.callout);
      if (!waiter) return;
      if (message.ok) waiter.resolve(message.result || {});
      else waiter.reject(new CryptletError(message.error.code, `${message.error.code}: ${message.error.message}`));
      return;
    }
    if (message.op === 'shutdown') process.exit(0);
    handle(message).then(
      (result) => send({ id: message.id, ok: true, ...result }),
      (err) => send({ id: message.id, ok: false, error: {
        code: err instanceof CryptletError && err.code === 'bad_arguments' ? 'bad_arguments' : 'cryptlet_error',
        message: String(err && err.message ? err.message : err),
      } }),
    );
  });
  lines.on('close', () => process.exit(0));
}

module.exports = { serve, CryptletError, Context };
