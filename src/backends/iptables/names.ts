/**
 * iptables mode's names, exactly as upstream kube-proxy spells them (pkg/proxy/iptables):
 * users grep `iptables-save` for these. Pure.
 */
import type { Protocol } from '../../core/objects.js';
import { flat } from '../../core/text.js';
import { hashedName } from './hash.js';

/** Top-level chains (upstream's constant names). */
export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_EXTERNAL_SERVICES = 'KUBE-EXTERNAL-SERVICES';
export const KUBE_NODEPORTS = 'KUBE-NODEPORTS';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';
export const KUBE_PROXY_CANARY = 'KUBE-PROXY-CANARY';
/** kubelet's firewall chain, which upstream duplicates for localhost NodePorts (issue 90259). */
export const KUBE_FIREWALL = 'KUBE-FIREWALL';

export const SVC_PREFIX = 'KUBE-SVC-';
export const SVL_PREFIX = 'KUBE-SVL-';
export const EXT_PREFIX = 'KUBE-EXT-';
export const FW_PREFIX = 'KUBE-FW-';
export const SEP_PREFIX = 'KUBE-SEP-';
export const SERVICE_CHAIN_PREFIXES = [SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX] as const;

/** Above this many endpoints in total, per-endpoint comments are left out (upstream's large-cluster mode). */
export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

/** Whether a chain name is one of the per-service-port chains (upstream's isServiceChainName). */
export function isServiceChainName(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

/** Upstream's portProtoHash: base32(sha256(servicePortName + lower-case protocol))[:16]. */
export function portProtoHash(servicePortName: string, protocol: Protocol | string): string {
  return hashedName('', servicePortName + protocol.toLowerCase(), 16);
}

/** The names of every per-service chain of one service port. */
export interface ServiceChainNames {
  /** KUBE-SVC-: endpoints for Cluster traffic policy. */
  readonly cluster: string;
  /** KUBE-SVL-: endpoints on this node, for Local traffic policy. */
  readonly local: string;
  /** KUBE-EXT-: entry for external destinations (node ports, external and load-balancer IPs). */
  readonly external: string;
  /** KUBE-FW-: loadBalancerSourceRanges filter. */
  readonly firewall: string;
}

export function serviceChainNames(servicePortName: string, protocol: Protocol | string): ServiceChainNames {
  const h = portProtoHash(servicePortName, protocol);
  return { cluster: flat`${SVC_PREFIX}${h}`, local: flat`${SVL_PREFIX}${h}`, external: flat`${EXT_PREFIX}${h}`, firewall: flat`${FW_PREFIX}${h}` };
}

/**
 * KUBE-SEP-: one endpoint of one service port. Upstream hashes servicePortName + lower-case
 * protocol + the endpoint's "ip:port" ("[ip]:port" for IPv6, Go's net.JoinHostPort).
 */
export function endpointChainName(servicePortName: string, protocol: Protocol | string, endpoint: string): string {
  return hashedName(SEP_PREFIX, servicePortName + protocol.toLowerCase() + endpoint, 16);
}

/**
 * The masquerade mark for --iptables-masquerade-bit, formatted as upstream formats it (Go's
 * `%#08x` of 1<<bit: eight zero-padded hex digits after "0x", e.g. 0x00004000 for bit 14).
 * iptables-save prints the same value as 0x4000.
 */
export function masqueradeMark(bit: number): string {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new RangeError(`masquerade bit must be 0..31, got ${bit}`);
  return '0x' + (2 ** bit).toString(16).padStart(8, '0');
}

const probabilityCache: string[] = [];

/**
 * 1/n with ten decimals, exactly as Go's fmt "%0.10f" prints the float64 1.0/n: the exact
 * binary value rounded half-to-even (JavaScript's toFixed rounds ties up, which differs at n=2048).
 */
export function probability(n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`probability needs a positive integer, got ${n}`);
  const cached = probabilityCache[n];
  if (cached !== undefined) return cached;
  const s = formatFixed(1 / n, 10);
  if (n <= 100_000) probabilityCache[n] = s;
  return s;
}

/** Formats a finite non-negative double with `digits` decimals, rounding its exact value half-to-even. */
export function formatFixed(x: number, digits: number): string {
  if (!Number.isFinite(x) || x < 0) throw new RangeError(`formatFixed needs a finite non-negative number, got ${x}`);
  // x = mantissa * 2^exp exactly.
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp: number;
  if (biased === 0) exp = -1074;
  else {
    mantissa |= 1n << 52n;
    exp = biased - 1075;
  }
  const scale = 10n ** BigInt(digits);
  let q: bigint;
  if (exp >= 0) q = mantissa * (1n << BigInt(exp)) * scale;
  else {
    const den = 1n << BigInt(-exp);
    const num = mantissa * scale;
    q = num / den;
    const r2 = (num % den) * 2n;
    if (r2 > den || (r2 === den && q % 2n === 1n)) q += 1n;
  }
  const s = q.toString().padStart(digits + 1, '0');
  return digits === 0 ? s : `${s.slice(0, s.length - digits)}.${s.slice(s.length - digits)}`;
}
