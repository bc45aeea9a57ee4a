/**
 * Pure IP address helpers (no node: imports, so renderers and schedulers can use them).
 */

/** Parses a dotted-quad IPv4 address strictly; returns its value as an unsigned 32-bit number. */
export function parseIPv4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v >>> 0;
}

export function formatIPv4(v: number): string {
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

/** Parses an IPv6 address (with ::, and an embedded IPv4 tail) into 8 16-bit groups. */
export function parseIPv6(s: string): number[] | undefined {
  if (s.includes('%')) return undefined;
  let head = s;
  let v4tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    v4tail = [v4 >>> 16, v4 & 0xffff];
    head = s.slice(0, lastColon + 1);
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const dbl = head.split('::');
  if (dbl.length > 2) return undefined;
  const parseGroups = (t: string): number[] | undefined => {
    if (t === '') return [];
    const out: number[] = [];
    for (const g of t.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = parseGroups(dbl[0] ?? '');
  const right = dbl.length === 2 ? parseGroups(dbl[1] ?? '') : [];
  if (!left || !right) return undefined;
  const total = left.length + right.length + v4tail.length;
  if (dbl.length === 2) {
    if (total > 7) return undefined;
    return [...left, ...new Array<number>(8 - total).fill(0), ...right, ...v4tail];
  }
  if (total !== 8) return undefined;
  return [...left, ...v4tail];
}

export type IPFamily = 'IPv4' | 'IPv6';

export function ipFamily(s: string): IPFamily | undefined {
  if (parseIPv4(s) !== undefined) return 'IPv4';
  if (parseIPv6(s) !== undefined) return 'IPv6';
  return undefined;
}

export function isIP(s: string): boolean {
  return ipFamily(s) !== undefined;
}

export interface CIDR {
  readonly family: IPFamily;
  readonly text: string;
  /** The canonical network, as Go prints it: "203.0.113.0/25" for "203.0.113.5/25". */
  readonly cidr: string;
  /** The prefix length. */
  readonly bits: number;
  contains(ip: string): boolean;
}

/** Parses "a.b.c.d/n" or "x::/n". Returns undefined when malformed. */
export function parseCIDR(s: string): CIDR | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const addr = s.slice(0, slash);
  const lenText = s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(lenText)) return undefined;
  const bits = Number(lenText);
  const v4 = parseIPv4(addr);
  if (v4 !== undefined) {
    if (bits > 32) return undefined;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const net = (v4 & mask) >>> 0;
    return {
      family: 'IPv4', text: s, bits, cidr: `${formatIPv4(net)}/${bits}`,
      contains(ip: string): boolean {
        const x = parseIPv4(ip);
        return x !== undefined && ((x & mask) >>> 0) === net;
      },
    };
  }
  const v6 = parseIPv6(addr);
  if (v6 !== undefined) {
    if (bits > 128) return undefined;
    const masked = v6.map((g, i) => {
      const take = Math.max(0, Math.min(16, bits - i * 16));
      return take === 0 ? 0 : g & ((0xffff << (16 - take)) & 0xffff);
    });
    return {
      family: 'IPv6', text: s, bits, cidr: `${formatIPv6(masked)}/${bits}`,
      contains(ip: string): boolean {
        const x = parseIPv6(ip);
        if (!x) return false;
        for (let i = 0; i < 8; i++) {
          const take = Math.max(0, Math.min(16, bits - i * 16));
          if (take === 0) return true;
          const m = (0xffff << (16 - take)) & 0xffff;
          if (((x[i] ?? 0) & m) !== ((v6[i] ?? 0) & m)) return false;
        }
        return true;
      },
    };
  }
  return undefined;
}

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

/** True for 127.0.0.0/8 and ::1: addresses that any process can bind without configuration. */
export function isLoopback(ip: string): boolean {
  const v4 = parseIPv4(ip);
  if (v4 !== undefined) return v4 >>> 24 === 127;
  const v6 = parseIPv6(ip);
  return v6 !== undefined && v6.slice(0, 7).every((g) => g === 0) && v6[7] === 1;
}
