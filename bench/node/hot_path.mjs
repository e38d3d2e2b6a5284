// Times the Node.js reference handler (handler.mjs) on the webhook's reference
// workloads, the same bodies and benchmark ids as the Rust criterion bench
// (functions/webhook/benches/hot_path.rs):
//
//   node bench/node/hot_path.mjs [--warm-up S] [--measure S] [--json]
//
// webhook_hot_path/{single,batch50}: the whole POST path (the SQS call faked);
// webhook_parts_batch50/{verify_signature,split}: its two parts on the batch.
// Like criterion, it warms up, then takes samples of many iterations each and
// reports the median time per iteration; run it pinned to one core (taskset).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeReceiver, split, verify } from './handler.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const data = join(here, '../../functions/webhook/benches/data');
const SECRET = 'bench-secret';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const warmUp = option('--warm-up', 2);
const measure = option('--measure', 5);
const asJson = args.includes('--json');

function load(name) {
  const manifest = JSON.parse(readFileSync(join(data, 'manifest.json'), 'utf8'));
  const spec = manifest.workloads[name];
  const body = readFileSync(join(data, spec.body));
  const sha = createHash('sha256').update(body).digest('hex');
  if (sha !== spec.sha256) throw new Error(`${name}: the workload differs from the reference bytes`);
  const headers = JSON.parse(readFileSync(join(data, spec.headers), 'utf8'));
  return { name, body, headers: { 'x-hub-signature-256': headers['x-hub-signature-256'] }, events: spec.expected_events };
}

// Criterion-like: samples of `iters` iterations, `iters` sized so that the
// samples fill the measurement time; the median of the per-iteration means.
async function bench(id, elements, bytes, fn) {
  const deadline = (s) => process.hrtime.bigint() + BigInt(Math.round(s * 1e9));
  let iters = 0;
  const warmEnd = deadline(warmUp);
  const warmStart = process.hrtime.bigint();
  while (process.hrtime.bigint() < warmEnd) {
    await fn();
    iters += 1;
  }
  const perIter = Number(process.hrtime.bigint() - warmStart) / iters;
  const samples = 50;
  const itersPerSample = Math.max(1, Math.round((measure * 1e9) / samples / perIter));
  const times = [];
  for (let s = 0; s < samples; s += 1) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < itersPerSample; i += 1) await fn();
    times.push(Number(process.hrtime.bigint() - start) / itersPerSample);
  }
  times.sort((a, b) => a - b);
  const median = (times[24] + times[25]) / 2;
  return { id, median_ns: median, elements, bytes, iterations: samples * itersPerSample };
}

const fakeQueue = { sendBatch: async () => [] }; // every entry accepted
const quarantine = { keep: async () => 'memory://quarantine' };
const accept = makeReceiver({ secret: SECRET, queue: fakeQueue, quarantine });

const results = [];
const single = load('single');
const batch = load('batch50');
for (const w of [single, batch]) {
  // The path must really do the work before it is timed.
  const accepted = await accept(w.headers, w.body);
  if (accepted.enqueued !== w.events || accepted.quarantined !== null) {
    throw new Error(`${w.name}: expected ${w.events} events enqueued, got ${JSON.stringify(accepted)}`);
  }
  results.push(await bench(`webhook_hot_path/${w.name}`, w.events, w.body.length, () => accept(w.headers, w.body)));
}
results.push(await bench('webhook_parts_batch50/verify_signature', null, batch.body.length, () => verify(SECRET, batch.headers, batch.body)));
results.push(await bench('webhook_parts_batch50/split', 50, batch.body.length, () => split(batch.body.toString('utf8'))));

if (asJson) {
  process.stdout.write(`${JSON.stringify({ node: process.version, results })}\n`);
} else {
  for (const r of results) {
    const rate = r.elements ? `${Math.round((r.elements * 1e9) / r.median_ns).toLocaleString('en')} events/s` : '';
    console.log(`${r.id.padEnd(42)} ${(r.median_ns / 1000).toFixed(2).padStart(9)} µs  ${rate}`);
  }
}
