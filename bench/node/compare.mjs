// Prints the Rust criterion results next to the Node.js reference's, as a
// Markdown table (scripts/bench runs both, then this):
//
//   node bench/node/compare.mjs <criterion dir> <node results .json>

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [criterionDir, nodeFile] = process.argv.slice(2);
if (!criterionDir || !nodeFile) {
  console.error('usage: node bench/node/compare.mjs <target/criterion> <node-results.json>');
  process.exit(2);
}
const node = JSON.parse(readFileSync(nodeFile, 'utf8'));

const time = (ns) => (ns >= 1000 ? `${(ns / 1000).toFixed(ns >= 100_000 ? 0 : 2)} µs` : `${ns.toFixed(0)} ns`);
const rate = (elements, ns) => (elements ? `${Math.round((elements * 1e9) / ns).toLocaleString('en')}` : '');
const gibs = (bytes, ns) => `${((bytes * 1e9) / ns / 2 ** 30).toFixed(2)} GiB/s`;

const rows = [
  '| benchmark | Rust (median) | Node.js (median) | Node ÷ Rust | Rust throughput | Node.js throughput |',
  '|---|---|---|---|---|---|',
];
for (const r of node.results) {
  const file = join(criterionDir, r.id, 'new', 'estimates.json');
  let rust;
  try {
    rust = JSON.parse(readFileSync(file, 'utf8')).median.point_estimate;
  } catch {
    console.error(`no criterion result at ${file}`);
    process.exit(1);
  }
  const thrpt = (ns) => (r.elements ? `${rate(r.elements, ns)} events/s` : gibs(r.bytes, ns));
  rows.push(
    `| \`${r.id}\` | ${time(rust)} | ${time(r.median_ns)} | ${(r.median_ns / rust).toFixed(1)}× | ${thrpt(rust)} | ${thrpt(r.median_ns)} |`,
  );
}
console.log(rows.join('\n'));
console.log(`\nRust: criterion medians from ${criterionDir}; Node ${node.node}: bench/node/hot_path.mjs.`);
