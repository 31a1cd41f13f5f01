/**
 * Fault points on the settlement path (SPEC §7). Production never sets them. The fault-injection tests set them to
 * break the real queue and consumer from outside, for every account object, including ones rebuilt after eviction.
 */
import type { JournalBatch } from "../core/journal";

export type Sender = Pick<Queue<JournalBatch>, "sendBatch">;

export const faultPoints: {
  /** wraps the queue sender of every account object built while it is set */
  sender?: (queue: Sender) => Sender;
  /** runs before and after the consumer writes a batch to D1; throwing fails that delivery of the batch */
  consumer?: (batch: MessageBatch<JournalBatch>, stage: "before" | "after") => void;
} = {};
