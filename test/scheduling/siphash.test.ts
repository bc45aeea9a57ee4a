import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipKey, halfSiphash13, hsiphash, hsiphashU32, siphash24 } from '../../src/scheduling/siphash.js';

// Test vectors from the kernel's lib/tests/siphash_kunit.c (from the SipHash reference source):
// input i bytes 00 01 02 ... (i-1), key bytes 00..0f.
const SIPHASH: readonly bigint[] = [
  0x726fdb47dd0e0e31n, 0x74f839c593dc67fdn, 0x0d6c8009d9a94f5an, 0x85676696d7fb7e2dn, 0xcf2794e0277187b7n, 0x18765564cd99a68dn,
  0xcbc9466e58fee3cen, 0xab0200f58b01d137n, 0x93f5f5799a932462n, 0x9e0082df0ba9e4b0n, 0x7a5dbbc594ddb9f3n, 0xf4b32f46226bada7n,
  0x751e8fbc860ee5fbn, 0x14ea5627c0843d90n, 0xf723ca908e7af2een, 0xa129ca6149be45e5n, 0x3f2acc7f57c29bdbn, 0x699ae9f52cbe4794n,
  0x4bc1b3f0968dd39cn, 0xbb6dc91da77961bdn, 0xbed65cf21aa2ee98n, 0xd0f2cbb02e3b67c7n, 0x93536795e3a33e88n, 0xa80c038ccd5ccec8n,
  0xb8ad50c6f649af94n, 0xbce192de8a85b8ean, 0x17d835b85bbb15f3n, 0x2f2e6163076bcfadn, 0xde4daaaca71dc9a5n, 0xa6a2506687956571n,
  0xad87a3535c49ef28n, 0x32d892fad841c342n, 0x7127512f72f27ccen, 0xa7f32346f95978e3n, 0x12e0b01abb051238n, 0x15e034d40fa197aen,
  0x314dffbe0815a3b4n, 0x027990f029623981n, 0xcadcd4e59ef40c4dn, 0x9abfd8766a33735cn, 0x0e3ea96b5304a7d0n, 0xad0c42d6fc585992n,
  0x187306c89bc215a9n, 0xd4a60abcf3792b95n, 0xf935451de4f21df2n, 0xa9538f0419755787n, 0xdb9acddff56ca510n, 0xd06c98cd5c0975ebn,
  0xe612a3cb9ecba951n, 0xc766e62cfcadaf96n, 0xee64435a9752fe72n, 0xa192d576b245165an, 0x0a8787bf8ecb74b2n, 0x81b3e73d20b49b6fn,
  0x7fa8220ba3b2ecean, 0x245731c13ca42499n, 0xb78dbfaf3a8d83bdn, 0xea1ad565322a1a0bn, 0x60e61c23a3795013n, 0x6606d7e446282b93n,
  0x6ca4ecb15c5f91e1n, 0x9f626da15c9625f3n, 0xe51b38608ef25f57n, 0x958a324ceb064572n,
];

// hsiphash on 64-bit kernels (SipHash-1-3 truncated to u32), key {0x0706050403020100, 0x0f0e0d0c0b0a0908}.
const HSIPHASH_64: readonly number[] = [
  0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140, 0x8d299a8e, 0x6c063de4,
  0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c,
  0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4,
  0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392,
  0x99e41531, 0x3f1ad944, 0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46, 0x12cc86b3,
  0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980, 0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148,
  0xf7a644ee, 0x0f1837f2, 0x4b6694e0, 0xb7bbb3a8,
];

// hsiphash on 32-bit kernels (HalfSipHash-1-3), key {0x03020100, 0x07060504}.
const HSIPHASH_32: readonly number[] = [
  0x5814c896, 0xe7e864ca, 0xbc4b0e30, 0x01539939, 0x7e059ea6, 0x88e3d89b, 0xa0080b65, 0x9d38d9d6, 0x577999b1, 0xc839caed,
  0xe4fa32cf, 0x959246ee, 0x6b28096c, 0x66dd9cd6, 0x16658a7c, 0xd0257b04, 0x8b31d501, 0x2b1cd04b, 0x06712339, 0x522aca67,
  0x911bb605, 0x90a65f0e, 0xf826ef7b, 0x62512deb, 0x57150ad7, 0x5d473507, 0x1ec47442, 0xab64afd3, 0x0a4100d0, 0x6d2ce652,
  0x2331b6a3, 0x08d8791a, 0xbc6dda8d, 0xe0f6c934, 0xb0652033, 0x9b9851cc, 0x7c46fb7f, 0x732ba8cb, 0xf142997a, 0xfcc9aa1b,
  0x05327eb2, 0xe110131c, 0xf9e5e7c0, 0xa7d708a6, 0x11795ab1, 0x65671619, 0x9f5fff91, 0xd89c5267, 0x007783eb, 0x95766243,
  0xab639262, 0x9c7e1390, 0xc368dda6, 0x38ddc455, 0xfa13d379, 0x979ea4e8, 0x53ecd77e, 0x2ee80657, 0x33dbb66a, 0xae3f0577,
  0x88b4c4cc, 0x3e7f480b, 0x74c1ebf8, 0x87178304,
];

const KEY = new SipKey(0x0706050403020100n, 0x0f0e0d0c0b0a0908n);
const input = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i);

test('siphash24 matches the kernel test vectors for lengths 0..63', () => {
  for (let i = 0; i < 64; i++) assert.equal(siphash24(input(i), KEY), SIPHASH[i], `length ${i}`);
});

test('hsiphash (64-bit kernels: SipHash-1-3) matches the kernel test vectors', () => {
  for (let i = 0; i < 64; i++) assert.equal(hsiphash(input(i), KEY), HSIPHASH_64[i], `length ${i}`);
});

test('halfSiphash13 (32-bit kernels) matches the kernel test vectors', () => {
  for (let i = 0; i < 64; i++) assert.equal(halfSiphash13(input(i), [0x03020100, 0x07060504]), HSIPHASH_32[i], `length ${i}`);
});

test('hsiphashU32 is hsiphash over the four little-endian bytes of the word', () => {
  // The kernel's own hsiphash_1u32 check: hsiphash_1u32(0x03020100) == vector[4].
  assert.equal(hsiphashU32(0x03020100, KEY), HSIPHASH_64[4]);
  for (const v of [0, 1, 0xdeadbeef, 0xffffffff, 0xc6120001]) {
    const bytes = Uint8Array.of(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24);
    assert.equal(hsiphashU32(v, KEY), hsiphash(bytes, KEY), v.toString(16));
  }
});
