'use strict';
// sla_monitor: a utility cryptlet in JavaScript. The container signs what these methods return.
const { serve, CryptletError } = require('./cryptlet');

const BP = 10000n;

function uint(value, name) {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'string' && /^[0-9]{1,78}$/.test(value)) return BigInt(value);
  throw CryptletError.badArguments(`${name} must be an unsigned integer (number or decimal string)`);
}

function checkObservations(observations, periodEnd) {
  if (!Array.isArray(observations) || observations.length === 0 || observations.length > 100000) {
    throw CryptletError.badArguments('observations must be a non-empty list of {at, up}');
  }
  let last = -1n;
  return observations.map((o, i) => {
    if (o === null || typeof o !== 'object' || typeof o.up !== 'boolean') {
      throw CryptletError.badArguments(`observations[${i}] must be {at, up: bool}`);
    }
    const at = uint(o.at, `observations[${i}].at`);
    if (at <= last || at >= periodEnd) {
      throw CryptletError.badArguments(`observations[${i}].at must increase and precede period_end`);
    }
    last = at;
    return { at, up: o.up };
  });
}

serve({
  async evaluate(args, ctx) {
    const periodEnd = uint(args.period_end, 'period_end');
    const target = uint(args.target_bp, 'target_bp');
    const penaltyPerBp = uint(args.penalty_per_bp, 'penalty_per_bp');
    if (target > BP) throw CryptletError.badArguments('target_bp must be at most 10000');
    const obs = checkObservations(args.observations, periodEnd);
    let upMs = 0n;
    obs.forEach((o, i) => {
      const until = i + 1 < obs.length ? obs[i + 1].at : periodEnd;
      if (o.up) upMs += until - o.at;
    });
    const availability = (upMs * BP) / (periodEnd - obs[0].at);
    const breached = availability < target;
    const penalty = breached ? (target - availability) * penaltyPerBp : 0n;
    if (breached) {
      ctx.emit('SlaBreached', { availability_bp: Number(availability), target_bp: Number(target), penalty: penalty.toString() });
    }
    await ctx.log(`evaluated ${obs.length} observations: ${availability} bp`);
    return { availability_bp: Number(availability), breached, penalty: penalty.toString() };
  },

  async probe(args, ctx) {
    if (typeof args.url !== 'string') throw CryptletError.badArguments('url must be a string');
    const response = await ctx.fetch(args.url, { timeoutS: 5 });
    return { up: response.status < 500, status: response.status, checked_at: await ctx.nowMs() };
  },
});
