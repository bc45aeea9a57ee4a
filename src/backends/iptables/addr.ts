/**
 * Addresses the way upstream prints them (Go's net.IP.String / net.IPNet.String), so that
 * rules read the same whatever spelling a manifest used. Pure.
 */
import { formatIPv4, parseIPv4, parseIPv6, type IPFamily } from '../../core/ip.js';

/** RFC 5952 text of eight 16-bit groups (Go's rules: longest run of two or more zero groups becomes "::"). */
export function formatIPv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if ((groups[i] ?? 0) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && (groups[j] ?? 0) === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  const hex = (i: number): string => (groups[i] ?? 0).toString(16);
  if (bestStart < 0) return [0, 1, 2, 3, 4, 5, 6, 7].map(hex).join(':');
  const left = [];
  for (let i = 0; i < bestStart; i++) left.push(hex(i));
  const right = [];
  for (let i = bestStart + bestLen; i < 8; i++) right.push(hex(i));
  return `${left.join(':')}::${right.join(':')}`;
}

/** The canonical text and family of an IP address, or undefined when it is not one. */
export function canonicalIP(text: string): { ip: string; family: IPFamily } | undefined {
  const s = text.trim();
  const v4 = parseIPv4(s);
  if (v4 !== undefined) return { ip: formatIPv4(v4), family: 'IPv4' };
  const v6 = parseIPv6(s);
  if (v6 === undefined) return undefined;
  // IPv4-mapped IPv6 addresses are IPv4 to Go.
  if (v6.slice(0, 5).every((g) => g === 0) && v6[5] === 0xffff) {
    return { ip: formatIPv4((((v6[6] ?? 0) << 16) | (v6[7] ?? 0)) >>> 0), family: 'IPv4' };
  }
  return { ip: formatIPv6(v6), family: 'IPv6' };
}

/** The canonical network text ("203.0.113.0/25" for " 203.0.113.5/25") and family of a CIDR. */
export function canonicalCIDR(text: string): { cidr: string; family: IPFamily; contains(ip: string): boolean } | undefined {
  const s = text.trim();
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const lenText = s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(lenText)) return undefined;
  const bits = Number(lenText);
  const addr = s.slice(0, slash);
  const v4 = parseIPv4(addr);
  if (v4 !== undefined) {
    if (bits > 32) return undefined;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const net = (v4 & mask) >>> 0;
    return {
      cidr: `${formatIPv4(net)}/${bits}`,
      family: 'IPv4',
      contains: (ip) => {
        const x = parseIPv4(ip);
        return x !== undefined && ((x & mask) >>> 0) === net;
      },
    };
  }
  const v6 = parseIPv6(addr);
  if (v6 === undefined || bits > 128) return undefined;
  const masked = v6.map((g, i) => {
    const take = Math.max(0, Math.min(16, bits - i * 16));
    return take === 0 ? 0 : g & ((0xffff << (16 - take)) & 0xffff);
  });
  return {
    cidr: `${formatIPv6(masked)}/${bits}`,
    family: 'IPv6',
    contains: (ip) => {
      const x = parseIPv6(ip);
      if (!x) return false;
      for (let i = 0; i < 8; i++) {
        const take = Math.max(0, Math.min(16, bits - i * 16));
        if (take === 0) return true;
        const m = (0xffff << (16 - take)) & 0xffff;
        if (((x[i] ?? 0) & m) !== ((masked[i] ?? 0) & m)) return false;
      }
      return true;
    },
  };
}
