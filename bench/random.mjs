// Seeded activity for the bench's simulations (bench/simulate.mjs, bench/org.mjs): the same draws every run.

/** A seeded generator (mulberry32). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` draws of ranks 0 … count-1, Zipf with exponent `s` (rank k has weight (k+1)^-s). */
export function zipfDraws(n, count, s, random) {
  const cdf = new Float64Array(count);
  let acc = 0;
  for (let k = 0; k < count; k++) cdf[k] = acc += (k + 1) ** -s;
  const draws = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const u = random() * acc;
    let lo = 0;
    let hi = count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    draws[i] = lo;
  }
  return draws;
}
