/**
 * SHA-256 (FIPS 180-4) and RFC 4648 base32, in plain TypeScript so that render() needs no
 * node: module. Used only for upstream's chain names; inputs are a few dozen bytes.
 */

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** Message schedule and state, reused across calls (hashing is synchronous, so never shared concurrently). */
const W = new Uint32Array(64);
const H = new Uint32Array(8);

const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** Scratch space for a message and its padding; grows when a longer message comes. */
let scratch = new Uint8Array(256);

function room(bytes: number): Uint8Array {
  if (scratch.length < bytes) scratch = new Uint8Array(Math.max(bytes, scratch.length * 2));
  return scratch;
}

/**
 * Writes the UTF-8 bytes of a string at the start of the scratch space (lone surrogates become
 * U+FFFD, as Go's conversion does); returns their count.
 */
function utf8Into(s: string): number {
  let buf = room(s.length * 3 + 72);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[n++] = c;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x800) {
      buf[n++] = 0xc0 | (c >> 6);
      buf[n++] = 0x80 | (c & 63);
    } else if (c < 0x10000) {
      buf[n++] = 0xe0 | (c >> 12);
      buf[n++] = 0x80 | ((c >> 6) & 63);
      buf[n++] = 0x80 | (c & 63);
    } else {
      buf[n++] = 0xf0 | (c >> 18);
      buf[n++] = 0x80 | ((c >> 12) & 63);
      buf[n++] = 0x80 | ((c >> 6) & 63);
      buf[n++] = 0x80 | (c & 63);
    }
    buf = scratch;
  }
  return n;
}

/** UTF-8 bytes of a JavaScript string (lone surrogates become U+FFFD, as Go's conversion does). */
export function utf8(s: string): Uint8Array {
  return scratch.slice(0, utf8Into(s));
}

/** SHA-256 of the first `len` bytes of the scratch space, into H (which it clobbers, with the padding). */
function digestScratch(len: number): void {
  const blocks = Math.ceil((len + 9) / 64);
  const buf = room(blocks * 64);
  buf.fill(0, len, blocks * 64);
  buf[len] = 0x80;
  // Message length in bits as a 64-bit big-endian number (inputs here are far below 2^32 bits).
  const bits = len * 8;
  const end = blocks * 64;
  buf[end - 4] = bits >>> 24;
  buf[end - 3] = (bits >>> 16) & 255;
  buf[end - 2] = (bits >>> 8) & 255;
  buf[end - 1] = bits & 255;
  H.set(H0);
  const w = W;
  for (let off = 0; off < end; off += 64) {
    for (let t = 0; t < 16; t++) {
      const i = off + t * 4;
      w[t] = (((buf[i] ?? 0) << 24) | ((buf[i + 1] ?? 0) << 16) | ((buf[i + 2] ?? 0) << 8) | (buf[i + 3] ?? 0)) >>> 0;
    }
    for (let t = 16; t < 64; t++) {
      const w15 = w[t - 15] ?? 0;
      const w2 = w[t - 2] ?? 0;
      const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
      const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
      w[t] = ((w[t - 16] ?? 0) + s0 + (w[t - 7] ?? 0) + s1) >>> 0;
    }
    let a = H[0] ?? 0, b = H[1] ?? 0, c = H[2] ?? 0, d = H[3] ?? 0;
    let e = H[4] ?? 0, f = H[5] ?? 0, g = H[6] ?? 0, hh = H[7] ?? 0;
    for (let t = 0; t < 64; t++) {
      const s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + s1 + ch + (K[t] ?? 0) + (w[t] ?? 0)) >>> 0;
      const s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (s0 + maj) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    H[0] = (H[0] ?? 0) + a;
    H[1] = (H[1] ?? 0) + b;
    H[2] = (H[2] ?? 0) + c;
    H[3] = (H[3] ?? 0) + d;
    H[4] = (H[4] ?? 0) + e;
    H[5] = (H[5] ?? 0) + f;
    H[6] = (H[6] ?? 0) + g;
    H[7] = (H[7] ?? 0) + hh;
  }
}

/** Byte `i` (0..31) of the digest in H. */
function digestByte(i: number): number {
  return ((H[i >> 2] ?? 0) >>> (24 - 8 * (i & 3))) & 255;
}

/** SHA-256 digest (32 bytes) of the bytes. */
export function sha256(data: Uint8Array): Uint8Array {
  room(data.length + 72).set(data);
  digestScratch(data.length);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = digestByte(i);
  return out;
}

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

/** Character codes of a name being built (hashedName is synchronous, so never shared concurrently). */
const codes: number[] = [];

/**
 * `prefix` followed by the first `chars` characters of base32(sha256(utf8(text))) (upper case,
 * as upstream's chain names), then `suffix`, as one flat string: a concatenation would keep a
 * node per part, and a slice of the whole base32 text that text (3x the memory of the name, for
 * every endpoint of a large cluster). At most 51 characters of hash.
 */
export function hashedName(prefix: string, text: string, chars: number, suffix = ''): string {
  digestScratch(utf8Into(text));
  codes.length = 0;
  for (let i = 0; i < prefix.length; i++) codes.push(prefix.charCodeAt(i));
  let buf = 0;
  let bits = 0;
  for (let i = 0; codes.length - prefix.length < chars; ) {
    if (bits < 5) {
      buf = ((buf << 8) | digestByte(i++)) & 0xffff;
      bits += 8;
    }
    codes.push(B32.charCodeAt((buf >>> (bits - 5)) & 31));
    bits -= 5;
  }
  for (let i = 0; i < suffix.length; i++) codes.push(suffix.charCodeAt(i));
  return String.fromCharCode.apply(null, codes);
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 with the standard alphabet and '=' padding (Go's base32.StdEncoding). */
export function base32(data: Uint8Array): string {
  let out = '';
  let buf = 0;
  let bits = 0;
  for (const byte of data) {
    buf = ((buf << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += B32[(buf >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(buf << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

export function hex(data: Uint8Array): string {
  let s = '';
  for (const b of data) s += b.toString(16).padStart(2, '0');
  return s;
}
