/**
 * The archive (SPEC §7): every journal entry, window usage and events included, lands in R2 as NDJSON, one line per
 * entry (`{"type":"ledger","entry":…}` or `{"type":"event","event":…}`, the accountId inside), written by the
 * consumer before its D1 write (so the watermark never passes an entry the archive lacks). All the entries of one
 * `archive` call (a consumer batch's messages of one shard) are grouped by shard and the UTC hour they were made in, and each group is one object:
 *
 *   journal/<shard>/<YYYY-MM-DDTHH>/<digest>.ndjson
 *
 * so a batch costs one R2 put per shard-hour, not one per message. The digest is SHA-256 of the group's content,
 * named as its runs (`accountId:firstSeq-lastSeq`, sorted): a redelivered identical batch rewrites the same object
 * with the same bytes. Batches are packed differently on redelivery and resend, so two objects can hold the same
 * entry: the export keeps each (accountId, seq) once.
 */
import type { JournalBatch, JournalMessage } from "../core/journal";
import { itemOf, seqOf } from "../core/journal";
import { HOUR_MS } from "../core/time";
import { shardOf } from "./shards";

const hourOf = (ms: number) => new Date(ms).toISOString().slice(0, 13);
const createdAtOf = (m: JournalMessage) => itemOf(m).createdAt;
const accountOf = (m: JournalMessage) => itemOf(m).accountId;
const encoder = new TextEncoder();

/** The folder of one shard's objects for the hour that `at` falls in. */
export const hourPrefix = (shard: number, at: number) => `journal/${shard}/${hourOf(at)}/`;

const inOrder = (a: JournalMessage, b: JournalMessage) =>
  accountOf(a) < accountOf(b) ? -1 : accountOf(a) > accountOf(b) ? 1 : seqOf(a) - seqOf(b);

/** The group's maximal runs of consecutive seqs per account, as `accountId:first-last` (entries sorted, unique). */
function runsOf(entries: JournalMessage[]): string[] {
  const runs: string[] = [];
  let start = 0;
  for (let i = 1; i <= entries.length; i++) {
    const [prev, next] = [entries[i - 1], entries[i]];
    if (next && accountOf(next) === accountOf(prev) && seqOf(next) === seqOf(prev) + 1) continue;
    runs.push(`${accountOf(prev)}:${seqOf(entries[start])}-${seqOf(prev)}`);
    start = i;
  }
  return runs;
}

async function digestOf(text: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The objects the messages become: their entries by shard and hour, each (accountId, seq) once, in order. */
export async function archiveObjects(env: Env, messages: JournalBatch[]): Promise<{ key: string; body: string }[]> {
  const groups = new Map<string, Map<string, JournalMessage>>();
  for (const msg of messages) {
    const shard = shardOf(env, msg.accountId);
    for (const m of msg.entries) {
      const prefix = hourPrefix(shard, createdAtOf(m));
      const group = groups.get(prefix) ?? new Map<string, JournalMessage>();
      // A batch can hold a message and its resend: the entry is written once.
      group.set(`${accountOf(m)}:${seqOf(m)}`, m);
      groups.set(prefix, group);
    }
  }
  return Promise.all(
    [...groups].map(async ([prefix, group]) => {
      const entries = [...group.values()].sort(inOrder);
      return {
        // JSON keeps the list unambiguous whatever characters an id holds.
        key: `${prefix}${await digestOf(JSON.stringify(runsOf(entries)))}.ndjson`,
        body: `${entries.map((m) => JSON.stringify(m)).join("\n")}\n`,
      };
    }),
  );
}

/**
 * Writes the messages' entries to the archive, one object per shard-hour, and returns the keys. Throws if any write
 * fails: the caller retries every message it passed (their D1 part is then a no-op).
 */
export async function archive(env: Env, messages: JournalBatch[]): Promise<string[]> {
  const objects = await archiveObjects(env, messages);
  await Promise.all(
    objects.map((o) => env.ARCHIVE.put(o.key, o.body, { httpMetadata: { contentType: "application/x-ndjson" } })),
  );
  return objects.map((o) => o.key);
}

/**
 * One account's archived entries made in [from, to), as NDJSON: hour by hour, each hour's entries by seq, each seq
 * once. Objects are shared by every account of the shard, so for each hour in the range it lists the shard's folder
 * and reads every object in it, keeping this account's lines. The cost therefore grows with the shard's traffic in
 * the range, not the account's: one R2 read per object (one per consumer batch and hour) plus a list call per 1,000;
 * memory holds one hour of the account's entries. Ask for a day at a time.
 */
export function exportAccount(env: Env, accountId: string, from: number, to: number): ReadableStream<Uint8Array> {
  const shard = shardOf(env, accountId);
  // Every line carries its account as this exact JSON string: a cheap test before parsing other accounts' lines.
  const quoted = JSON.stringify(accountId);
  let hour = Math.floor(from / HOUR_MS) * HOUR_MS;
  /** The account's lines of one hour, by seq, each once (an entry is archived under the hour it was made in). */
  async function linesOf(prefix: string): Promise<string[]> {
    const bySeq = new Map<number, string>();
    let cursor: string | undefined;
    do {
      const page = await env.ARCHIVE.list({ prefix, cursor });
      for (const o of page.objects) {
        const body = await env.ARCHIVE.get(o.key);
        if (!body) continue;
        for (const line of (await body.text()).split("\n")) {
          if (!line.includes(quoted)) continue;
          // Lines the consumer wrote from validated journal messages.
          const m = JSON.parse(line) as JournalMessage;
          const at = createdAtOf(m);
          if (accountOf(m) === accountId && at >= from && at < to) bySeq.set(seqOf(m), line);
        }
      }
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    return [...bySeq].sort(([a], [b]) => a - b).map(([, line]) => `${line}\n`);
  }
  return new ReadableStream<Uint8Array>({
    // Each pull enqueues or closes: a pull that did neither would not be called again.
    async pull(controller) {
      while (hour < to) {
        const lines = await linesOf(hourPrefix(shard, hour));
        hour += HOUR_MS;
        if (lines.length > 0) return controller.enqueue(encoder.encode(lines.join("")));
      }
      controller.close();
    },
  });
}
