// A reference webhook POST handler in plain Node.js (20+, no dependencies) doing
// the work of the Rust hot path (functions/webhook/src/accept.rs with
// shared/messenger-types/src/routing.rs), so the two can be timed side by side:
//
// 1. size check (5 MiB), then HMAC-SHA256 of the raw body, compared with
//    crypto.timingSafeEqual against X-Hub-Signature-256 (sha1 only when absent);
// 2. JSON.parse of the body; `object` must be "page";
// 3. every item of every entry's messaging[] and standby[] becomes one queue
//    message: FIFO group `<page>:<psid or user_ref>` (each part made SQS-safe as
//    in routing.rs), an event key built by the same rules as routing.rs, the
//    deduplication id = sha256 hex of that key, and the body
//    {"type":"event","page_id","source","key","event"};
// 4. messages are cut into SendMessageBatch calls (10 entries, 256 KiB) and the
//    entries {Id, MessageBody, MessageGroupId, MessageDeduplicationId} handed to
//    the queue, which the benchmark fakes, as the Rust benchmark does.
//
// One difference is inherent to JSON.parse: Node cannot keep an event's bytes as
// Meta sent them, so the queued event is re-serialised (`\u00e4` becomes `ä`,
// `\/` becomes `/`). That is harmless after the signature check, and is what a
// Node handler does; the Rust handler copies the original bytes instead.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const MAX_BODY_BYTES = 5 * 1024 * 1024;
export const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_BATCH_ENTRIES = 10;
const MAX_BATCH_BYTES = 256 * 1024;

const KNOWN_KINDS = [
  'message', 'postback', 'referral', 'optin', 'account_linking', 'delivery', 'read',
  'reaction', 'message_edit', 'pass_thread_control', 'take_thread_control',
  'request_thread_control', 'app_roles', 'policy_enforcement',
];

const sha256Hex = (text) => createHash('sha256').update(text).digest('hex');
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const str = (v) => (typeof v === 'string' ? v : undefined);
// Ids arrive as strings, in a few payloads as numbers.
const looseId = (v) => (typeof v === 'string' ? v : Number.isInteger(v) && v >= 0 ? String(v) : undefined);
// A raw JSON scalar as routing.rs writes it into keys (the value's JSON text).
const rawText = (v) => (v === undefined ? '-' : JSON.stringify(v));

export class SignatureError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 401 missing/malformed, 403 mismatch
  }
}

function parseSignature(value, prefix, length) {
  const text = value.trim();
  const eq = text.indexOf('=');
  if (eq < 0 || text.slice(0, eq).toLowerCase() !== prefix) return undefined;
  const hex = text.slice(eq + 1);
  if (hex.length !== length * 2 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  return Buffer.from(hex, 'hex');
}

export function verify(secret, headers, body) {
  for (const [name, algorithm, length] of [['x-hub-signature-256', 'sha256', 32], ['x-hub-signature', 'sha1', 20]]) {
    const value = headers[name];
    if (value === undefined) continue;
    const expected = parseSignature(value, algorithm, length);
    if (!expected) throw new SignatureError(401, `malformed ${name}`);
    const actual = createHmac(algorithm, secret).update(body).digest();
    if (!timingSafeEqual(actual, expected)) throw new SignatureError(403, `${name} does not match`);
    return algorithm;
  }
  throw new SignatureError(401, 'no signature header');
}

function sqsSafe(part) {
  // Printable ASCII without ':' (0x21-0x7e), at most 60 characters.
  const ok = part.length > 0 && part.length <= 60 && /^[\x21-\x39\x3b-\x7e]*$/.test(part);
  return ok ? part : `h${sha256Hex(part).slice(0, 40)}`;
}

const field = (event, name) => (isObject(event[name]) ? event[name] : undefined);

export function route(pageId, event) {
  const fields = isObject(event) ? event : {};
  const kind = KNOWN_KINDS.find((k) => Object.hasOwn(fields, k)) ?? 'unknown';
  const message = field(fields, 'message');
  const isEcho = message?.is_echo === true;
  const sender = field(fields, 'sender');
  const recipient = field(fields, 'recipient');
  const [pageParty, userParty] = isEcho ? [sender, recipient] : [recipient, sender];
  const optin = field(fields, 'optin');
  const page = pageId ?? looseId(pageParty?.id);
  const user = looseId(userParty?.id) ?? str(userParty?.user_ref) ?? str(optin?.user_ref);
  const key = eventKey(kind, fields, event, page ?? '-', user ?? '-');
  const group = `${sqsSafe(page ?? 'unknown-page')}:${sqsSafe(user ?? 'page')}`;
  return { kind, page, user, key, group };
}

function eventKey(kind, fields, event, page, user) {
  const ts = rawText(fields.timestamp);
  const byMid = (prefix, mid) => (typeof mid === 'string' && mid !== '' ? `${prefix}:${mid}` : undefined);
  const part = field(fields, kind);
  let key;
  switch (part && kind) {
    case 'message':
      key = byMid('message', part.mid);
      break;
    case 'postback':
      key = byMid('postback', part.mid) ??
        `postback:${page}:${user}:${ts}:${sha256Hex(part.payload === undefined ? '' : JSON.stringify(part.payload)).slice(0, 16)}`;
      break;
    case 'reaction':
      key = `reaction:${str(part.mid) ?? '-'}:${str(part.action) ?? '-'}:${str(part.reaction) ?? str(part.emoji) ?? '-'}:${user}:${ts}`;
      break;
    case 'message_edit':
      key = `message_edit:${str(part.mid) ?? '-'}:${rawText(part.num_edit)}`;
      break;
    case 'delivery':
    case 'read': {
      const mids = Array.isArray(part.mids) ? `:${sha256Hex(part.mids.join(',')).slice(0, 16)}` : '';
      key = `${kind}:${page}:${user}:${rawText(part.watermark)}${mids}`;
      break;
    }
    case 'optin': {
      const id = str(part.one_time_notif_token) ?? str(part.notification_messages_token) ?? str(part.ref) ?? '-';
      const status = str(part.notification_messages_status) ?? '';
      key = `optin:${str(part.type) ?? 'plugin'}:${page}:${user}:${ts}:${sha256Hex(`${id}|${status}`).slice(0, 16)}`;
      break;
    }
    default:
  }
  if (key !== undefined) return key;
  if (kind === 'unknown') {
    const name = Object.keys(fields).find((k) => k !== 'sender' && k !== 'recipient' && k !== 'timestamp') ?? 'none';
    return `unknown:${name}:${page}:${user}:${ts}:${sha256Hex(JSON.stringify(event)).slice(0, 32)}`;
  }
  return `${kind}:${page}:${user}:${ts}`;
}

/** Splits a verified body into queue messages; throws on a body that is not a Page delivery. */
export function split(text) {
  const envelope = JSON.parse(text);
  if (!isObject(envelope) || !Array.isArray(envelope.entry)) throw new Error('not a webhook envelope');
  if (envelope.object !== 'page') throw new Error('object is not "page"');
  const messages = [];
  const leftovers = [];
  envelope.entry.forEach((entry, i) => {
    const messaging = Array.isArray(entry?.messaging) ? entry.messaging : [];
    const standby = Array.isArray(entry?.standby) ? entry.standby : [];
    if (messaging.length + standby.length === 0) {
      leftovers.push(`entry[${i}] has no messaging or standby events`);
      return;
    }
    const pageId = str(entry.id);
    for (const [source, events] of [['messaging', messaging], ['standby', standby]]) {
      for (const event of events) {
        const r = route(pageId, event);
        const body = JSON.stringify({ type: 'event', page_id: r.page, source, key: r.key, event });
        const message = { groupId: r.group, dedupId: sha256Hex(r.key), body, kind: r.kind };
        if (body.length + message.groupId.length + message.dedupId.length > MAX_MESSAGE_BYTES) {
          leftovers.push(`a ${r.kind} event in entry[${i}] is over the queue message limit`);
        } else {
          messages.push(message);
        }
      }
    }
  });
  return { messages, leftovers };
}

function chunk(messages) {
  const chunks = [];
  let start = 0;
  let bytes = 0;
  messages.forEach((m, i) => {
    const size = m.body.length + m.groupId.length + m.dedupId.length;
    if (i - start === MAX_BATCH_ENTRIES || (i > start && bytes + size > MAX_BATCH_BYTES)) {
      chunks.push(messages.slice(start, i));
      start = i;
      bytes = 0;
    }
    bytes += size;
  });
  if (start < messages.length) chunks.push(messages.slice(start));
  return chunks;
}

/**
 * The POST path: `queue.sendBatch(entries)` resolves to the failed entries (none,
 * for the benchmark's fake); `quarantine.keep(body, reason)` keeps what cannot be
 * routed. Resolves to { enqueued, quarantined }.
 */
export function makeReceiver({ secret, queue, quarantine, maxBodyBytes = MAX_BODY_BYTES }) {
  return async function accept(headers, body) {
    if (body.length > maxBodyBytes) throw Object.assign(new Error('body too large'), { status: 413 });
    verify(secret, headers, body);
    let parts;
    try {
      parts = split(body.toString('utf8'));
    } catch (e) {
      return { enqueued: 0, quarantined: await quarantine.keep(body, e.message) };
    }
    for (const batch of chunk(parts.messages)) {
      const entries = batch.map((m, i) => ({
        Id: String(i),
        MessageBody: m.body,
        MessageGroupId: m.groupId,
        MessageDeduplicationId: m.dedupId,
      }));
      const failed = await queue.sendBatch(entries);
      if (failed.length > 0) throw Object.assign(new Error('enqueue failed'), { status: 500 });
    }
    const quarantined = parts.leftovers.length > 0 ? await quarantine.keep(body, parts.leftovers.join('; ')) : null;
    return { enqueued: parts.messages.length, quarantined };
  };
}
