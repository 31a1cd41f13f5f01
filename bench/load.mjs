// A closed-loop HTTP load run with autocannon: `connections` requests in flight, each connection
// sending its next request when the previous answer arrives. Every request can be unique
// (idempotency keys, account ids) through `next(i)`.
import autocannon from "autocannon";

/**
 * @param {object} o
 * @param {URL} o.base          the server
 * @param {number} o.connections
 * @param {number} o.seconds
 * @param {(i: number) => {method: string, path: string, headers?: object, body?: string}} o.next
 * @param {number} [o.overallRate]  paced instead of closed-loop: this many requests per second in all
 * @param {number} [o.amount]       this many requests in all, however long they take (instead of `seconds`)
 */
export async function load({ base, connections, seconds, next, overallRate, amount }) {
  let i = 0;
  const result = await autocannon({
    url: base.origin,
    connections,
    ...(amount ? { amount } : { duration: seconds }),
    pipelining: 1,
    timeout: 30,
    ...(overallRate ? { overallRate } : {}),
    requests: [{ setupRequest: (req) => ({ ...req, ...next(i++) }) }],
  });
  const ok = result["2xx"] ?? 0;
  return {
    requests: ok + result.non2xx,
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])),
    seconds: result.duration,
    rps: ok / result.duration,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    meanMs: result.latency.average,
    // everything read per answer: status line, headers and body
    bytesPerResponse: result.throughput.total / Math.max(1, ok + result.non2xx),
  };
}
