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
  /**
   * runs on the lease traffic between an organization and its members (SPEC §9): "issue" as the pool object takes a
   * member's request (throwing: the request fails, nothing issued), "issued" as the member receives the answer
   * (throwing: the issue is lost on the way back), "close" as the pool object asks a member to close (throwing: the
   * close never reaches the member), "closed" as the pool object receives a close's answer (throwing: the member
   * closed, the pool has not applied it yet)
   */
  lease?: (stage: "issue" | "issued" | "close" | "closed", accountId: string) => void;
} = {};
