/**
 * The archive (SPEC §7): every journal entry, window usage and events included, lands in R2 as NDJSON, one line per
 * entry (`{"type":"ledger","entry":…}` or `{"type":"event","event":…}`), written by the consumer once the entries are
 * in D1. A settlement message's entries are grouped by the UTC hour they were made in, and each group is one object:
 *
 *   journal/<shard>/<accountId>/<YYYY-MM-DDTHH>/<firstSeq>-<lastSeq>.ndjson   (seqs zero-padded to 16 digits)
 *
 * So a redelivered message rewrites the same objects with the same bytes. A resend may pack entries differently, so
 * two objects can hold the same entry: the export keeps each (accountId, seq) once.
 */
import type { JournalBatch, JournalMessage } from "../core/journal";
import { itemOf, seqOf } from "../core/journal";
import { shardOf } from "./shards";

const pad = (seq: number) => String(seq).padStart(16, "0");
const hourOf = (ms: number) => new Date(ms).toISOString().slice(0, 13);
const createdAtOf = (m: JournalMessage) => itemOf(m).createdAt;

/** The folder of one account's archive in its shard. */
export const accountPrefix = (shard: number, accountId: string) => `journal/${shard}/${accountId}/`;

/** The objects one message becomes: its entries grouped by hour, each group under its key. */
export function archiveObjects(shard: number, msg: JournalBatch): { key: string; body: string }[] {
  const byHour = new Map<string, JournalMessage[]>();
  for (const m of msg.entries) {
    const hour = hourOf(createdAtOf(m));
    const group = byHour.get(hour);
    if (group) group.push(m);
    else byHour.set(hour, [m]);
  }
  return [...byHour].map(([hour, entries]) => {
    const seqs = entries.map(seqOf);
    return {
      key: `${accountPrefix(shard, msg.accountId)}${hour}/${pad(Math.min(...seqs))}-${pad(Math.max(...seqs))}.ndjson`,
      body: `${entries.map((m) => JSON.stringify(m)).join("\n")}\n`,
    };
  });
}

/** Writes the messages' entries to the archive. Throws if a write fails (the caller retries the message). */
export async function archive(env: Env, messages: JournalBatch[]): Promise<void> {
  const objects = messages.flatMap((m) => archiveObjects(shardOf(env, m.accountId), m));
  await Promise.all(
    objects.map((o) => env.ARCHIVE.put(o.key, o.body, { httpMetadata: { contentType: "application/x-ndjson" } })),
  );
}

/**
 * One account's archived entries made in [from, to), as NDJSON, each (seq) once. Lists the account's objects from
 * `from`'s hour on, in key order, and stops past `to`'s hour: the cost is one R2 read per archived object in the range
 * (plus a list call per 1,000 objects), and memory grows with the entries streamed (the seqs already sent).
 */
export function exportAccount(env: Env, accountId: string, from: number, to: number): ReadableStream<Uint8Array> {
  const prefix = accountPrefix(shardOf(env, accountId), accountId);
  const [firstHour, lastHour] = [hourOf(from), hourOf(to)];
  const encoder = new TextEncoder();
  const sent = new Set<number>();
  let cursor: string | undefined;
  // Keys sort by hour; start just before the first hour's folder.
  let startAfter: string | undefined = `${prefix}${firstHour}`.slice(0, -1);
  let done = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (done) return controller.close();
      const page = await env.ARCHIVE.list({ prefix, cursor, startAfter: cursor ? undefined : startAfter });
      for (const o of page.objects) {
        const hour = o.key.slice(prefix.length, prefix.length + 13);
        if (hour > lastHour) {
          done = true;
          break;
        }
        if (hour < firstHour) continue;
        const body = await env.ARCHIVE.get(o.key);
        if (!body) continue;
        for (const line of (await body.text()).split("\n")) {
          if (line.length === 0) continue;
          // Lines the consumer wrote from validated journal messages.
          const m = JSON.parse(line) as JournalMessage;
          const at = createdAtOf(m);
          if (at < from || at >= to || sent.has(seqOf(m))) continue;
          sent.add(seqOf(m));
          controller.enqueue(encoder.encode(`${line}\n`));
        }
      }
      if (page.truncated && !done) cursor = page.cursor;
      else done = true;
      startAfter = undefined;
    },
  });
}
