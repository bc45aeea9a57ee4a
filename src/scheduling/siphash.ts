/**
 * SipHash as the Linux kernel implements it (lib/siphash.c), pure and dependency-free.
 *
 * - `siphash24`: SipHash-2-4 with a 128-bit key, 64-bit result (the kernel's `siphash()`).
 * - `hsiphash`: the kernel's `hsiphash()` as built on 64-bit kernels, where "HalfSipHash" is in
 *   fact SipHash-1-3 with a 128-bit key (two `unsigned long` words) whose 64-bit result is
 *   truncated to u32. This is the function ip_vs_mh.c uses on x86_64/arm64.
 * - `halfSiphash13`: the kernel's `hsiphash()` as built on 32-bit kernels: real HalfSipHash-1-3
 *   with a 64-bit key (two u32 words), 32-bit result.
 *
 * Input bytes are consumed little-endian, as `le64_to_cpup`/`get_unaligned_le64` do.
 * 64-bit lanes are kept as (hi, lo) pairs of unsigned 32-bit numbers, so no BigInt arithmetic is
 * needed on the hot path (mh hashes once per scheduled connection).
 */

/** A 128-bit SipHash key (the kernel's `siphash_key_t` / 64-bit `hsiphash_key_t`), pre-split. */
export class SipKey {
  readonly k0hi: number;
  readonly k0lo: number;
  readonly k1hi: number;
  readonly k1lo: number;
  constructor(k0: bigint, k1: bigint) {
    const m = 0xffffffffn;
    this.k0hi = Number((k0 >> 32n) & m);
    this.k0lo = Number(k0 & m);
    this.k1hi = Number((k1 >> 32n) & m);
    this.k1lo = Number(k1 & m);
  }
}

/** SipHash state: four 64-bit lanes as hi/lo u32 halves. */
class SipState {
  v0h: number; v0l: number;
  v1h: number; v1l: number;
  v2h: number; v2l: number;
  v3h: number; v3l: number;

  constructor(key: SipKey) {
    // PREAMBLE: "somepseudorandomlygeneratedbytes" xor key.
    this.v0h = (0x736f6d65 ^ key.k0hi) >>> 0; this.v0l = (0x70736575 ^ key.k0lo) >>> 0;
    this.v1h = (0x646f7261 ^ key.k1hi) >>> 0; this.v1l = (0x6e646f6d ^ key.k1lo) >>> 0;
    this.v2h = (0x6c796765 ^ key.k0hi) >>> 0; this.v2l = (0x6e657261 ^ key.k0lo) >>> 0;
    this.v3h = (0x74656462 ^ key.k1hi) >>> 0; this.v3l = (0x79746573 ^ key.k1lo) >>> 0;
  }

  /** SIPROUND. */
  round(): void {
    let t: number;
    // v0 += v1; v1 = rol64(v1, 13); v1 ^= v0; v0 = rol64(v0, 32);
    t = this.v0l + this.v1l;
    this.v0h = (this.v0h + this.v1h + (t > 0xffffffff ? 1 : 0)) >>> 0;
    this.v0l = t >>> 0;
    [this.v1h, this.v1l] = rotl(this.v1h, this.v1l, 13);
    this.v1h = (this.v1h ^ this.v0h) >>> 0; this.v1l = (this.v1l ^ this.v0l) >>> 0;
    t = this.v0h; this.v0h = this.v0l; this.v0l = t;
    // v2 += v3; v3 = rol64(v3, 16); v3 ^= v2;
    t = this.v2l + this.v3l;
    this.v2h = (this.v2h + this.v3h + (t > 0xffffffff ? 1 : 0)) >>> 0;
    this.v2l = t >>> 0;
    [this.v3h, this.v3l] = rotl(this.v3h, this.v3l, 16);
    this.v3h = (this.v3h ^ this.v2h) >>> 0; this.v3l = (this.v3l ^ this.v2l) >>> 0;
    // v0 += v3; v3 = rol64(v3, 21); v3 ^= v0;
    t = this.v0l + this.v3l;
    this.v0h = (this.v0h + this.v3h + (t > 0xffffffff ? 1 : 0)) >>> 0;
    this.v0l = t >>> 0;
    [this.v3h, this.v3l] = rotl(this.v3h, this.v3l, 21);
    this.v3h = (this.v3h ^ this.v0h) >>> 0; this.v3l = (this.v3l ^ this.v0l) >>> 0;
    // v2 += v1; v1 = rol64(v1, 17); v1 ^= v2; v2 = rol64(v2, 32);
    t = this.v2l + this.v1l;
    this.v2h = (this.v2h + this.v1h + (t > 0xffffffff ? 1 : 0)) >>> 0;
    this.v2l = t >>> 0;
    [this.v1h, this.v1l] = rotl(this.v1h, this.v1l, 17);
    this.v1h = (this.v1h ^ this.v2h) >>> 0; this.v1l = (this.v1l ^ this.v2l) >>> 0;
    t = this.v2h; this.v2h = this.v2l; this.v2l = t;
  }

  /** Absorbs one 64-bit message word m = (mh, ml) with `rounds` SIPROUNDs. */
  compress(mh: number, ml: number, rounds: number): void {
    this.v3h = (this.v3h ^ mh) >>> 0; this.v3l = (this.v3l ^ ml) >>> 0;
    for (let i = 0; i < rounds; i++) this.round();
    this.v0h = (this.v0h ^ mh) >>> 0; this.v0l = (this.v0l ^ ml) >>> 0;
  }

  /** POSTAMBLE / HPOSTAMBLE: returns v0^v1^v2^v3 as [hi, lo]. */
  finish(bh: number, bl: number, cRounds: number, dRounds: number): [number, number] {
    this.compress(bh, bl, cRounds);
    this.v2l = (this.v2l ^ 0xff) >>> 0;
    for (let i = 0; i < dRounds; i++) this.round();
    return [
      (this.v0h ^ this.v1h ^ this.v2h ^ this.v3h) >>> 0,
      (this.v0l ^ this.v1l ^ this.v2l ^ this.v3l) >>> 0,
    ];
  }
}

function rotl(h: number, l: number, n: number): [number, number] {
  // 0 < n < 32 here (rotations by 32 are done as swaps).
  return [((h << n) | (l >>> (32 - n))) >>> 0, ((l << n) | (h >>> (32 - n))) >>> 0];
}

function le32(data: Uint8Array, off: number): number {
  return ((data[off] ?? 0) | ((data[off + 1] ?? 0) << 8) | ((data[off + 2] ?? 0) << 16) | ((data[off + 3] ?? 0) << 24)) >>> 0;
}

/** Runs the generic byte-oriented SipHash-c-d over `data`; returns the 64-bit result as [hi, lo]. */
function sip64(data: Uint8Array, key: SipKey, cRounds: number, dRounds: number): [number, number] {
  const s = new SipState(key);
  const len = data.length;
  const end = len - (len % 8);
  for (let off = 0; off < end; off += 8) s.compress(le32(data, off + 4), le32(data, off), cRounds);
  // b = len << 56 | the remaining 0..7 bytes, little-endian.
  let bh = ((len & 0xff) << 24) >>> 0;
  let bl = 0;
  const left = len - end;
  for (let i = 0; i < left; i++) {
    const byte = data[end + i] ?? 0;
    if (i < 4) bl = (bl | (byte << (8 * i))) >>> 0;
    else bh = (bh | (byte << (8 * (i - 4)))) >>> 0;
  }
  return s.finish(bh, bl, cRounds, dRounds);
}

/** The kernel's `siphash()`: SipHash-2-4, 64-bit result. */
export function siphash24(data: Uint8Array, key: SipKey): bigint {
  const [h, l] = sip64(data, key, 2, 4);
  return (BigInt(h) << 32n) | BigInt(l);
}

/** The kernel's `hsiphash()` on 64-bit kernels: SipHash-1-3, result truncated to u32. */
export function hsiphash(data: Uint8Array, key: SipKey): number {
  return sip64(data, key, 1, 3)[1];
}

/**
 * `hsiphash(&v, sizeof(v), key)` for a host `unsigned int v` on a little-endian 64-bit kernel
 * (ip_vs_mh_hashkey): the four bytes of v, least significant first.
 */
export function hsiphashU32(v: number, key: SipKey): number {
  // One short block: b = (4 << 56) | v.
  const s = new SipState(key);
  return s.finish(0x04000000, v >>> 0, 1, 3)[1];
}

/** The kernel's `hsiphash()` on 32-bit kernels: HalfSipHash-1-3, key of two u32 words. */
export function halfSiphash13(data: Uint8Array, key: readonly [number, number]): number {
  let v0 = (0 ^ key[0]) >>> 0;
  let v1 = (0 ^ key[1]) >>> 0;
  let v2 = (0x6c796765 ^ key[0]) >>> 0;
  let v3 = (0x74656462 ^ key[1]) >>> 0;
  const rol = (x: number, n: number): number => ((x << n) | (x >>> (32 - n))) >>> 0;
  const round = (): void => {
    v0 = (v0 + v1) >>> 0; v1 = rol(v1, 5); v1 = (v1 ^ v0) >>> 0; v0 = rol(v0, 16);
    v2 = (v2 + v3) >>> 0; v3 = rol(v3, 8); v3 = (v3 ^ v2) >>> 0;
    v0 = (v0 + v3) >>> 0; v3 = rol(v3, 7); v3 = (v3 ^ v0) >>> 0;
    v2 = (v2 + v1) >>> 0; v1 = rol(v1, 13); v1 = (v1 ^ v2) >>> 0; v2 = rol(v2, 16);
  };
  const len = data.length;
  const end = len - (len % 4);
  for (let off = 0; off < end; off += 4) {
    const m = le32(data, off);
    v3 = (v3 ^ m) >>> 0;
    round();
    v0 = (v0 ^ m) >>> 0;
  }
  let b = ((len & 0xff) << 24) >>> 0;
  for (let i = 0; i < len - end; i++) b = (b | ((data[end + i] ?? 0) << (8 * i))) >>> 0;
  v3 = (v3 ^ b) >>> 0;
  round();
  v0 = (v0 ^ b) >>> 0;
  v2 = (v2 ^ 0xff) >>> 0;
  round(); round(); round();
  return (v1 ^ v3) >>> 0;
}
