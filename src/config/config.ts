/**
 * kproxy's configuration: one typed object with upstream's defaults, built from a
 * KubeProxyConfiguration file and/or flags (flags given on the command line win), validated
 * with messages that name the field.
 */
import { isSchedulerName, type SchedulerName } from '../core/annotations.js';
import { KproxyError } from '../core/errors.js';
import { isIP, parseCIDR } from '../core/ip.js';
import { PROXY_MODES, type ProxyMode } from '../backends/backend.js';
import type { ConntrackSettings } from '../platform/conntrack-settings.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface ProxyConfig {
  readonly mode: ProxyMode;
  readonly manifests: string | undefined;
  readonly kubeconfig: string | undefined;
  readonly master: string | undefined;
  readonly hostnameOverride: string;
  readonly bindAddress: string;
  /** undefined disables the server ("" or port 0 upstream). */
  readonly healthzBindAddress: HostPort | undefined;
  readonly metricsBindAddress: HostPort | undefined;
  readonly ipvsScheduler: SchedulerName;
  /** --ipvs-strict-arp: arp_ignore=1, arp_announce=2 (for kube-ipvs0 addresses). */
  readonly ipvsStrictARP: boolean;
  /** --ipvs-exclude-cidrs: virtual servers there are never deleted by IPVS mode. */
  readonly ipvsExcludeCIDRs: readonly string[];
  /** --ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout; 0 keeps the kernel's. */
  readonly ipvsTcpTimeoutMs: number;
  readonly ipvsTcpFinTimeoutMs: number;
  readonly ipvsUdpTimeoutMs: number;
  readonly clusterCIDRs: readonly string[];
  readonly nodePortAddresses: readonly string[];
  readonly masqueradeAll: boolean;
  readonly masqueradeBit: number;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
  readonly udpIdleTimeoutMs: number;
  /** Conntrack sysctls set at start in the kernel modes (upstream's conntrack section). */
  readonly conntrack: ConntrackSettings;
  readonly connectTimeoutMs: number;
  readonly cooldownMs: number;
  readonly drainTimeoutMs: number;
  readonly cleanup: boolean;
  readonly dryRun: boolean;
  readonly verbosity: number;
}

export const DEFAULTS: Omit<ProxyConfig, 'hostnameOverride'> = {
  mode: 'userspace',
  manifests: undefined,
  kubeconfig: undefined,
  master: undefined,
  bindAddress: '0.0.0.0',
  healthzBindAddress: { host: '0.0.0.0', port: 10256 },
  metricsBindAddress: { host: '127.0.0.1', port: 10249 },
  ipvsScheduler: 'rr',
  ipvsStrictARP: false,
  ipvsExcludeCIDRs: [],
  ipvsTcpTimeoutMs: 0,
  ipvsTcpFinTimeoutMs: 0,
  ipvsUdpTimeoutMs: 0,
  clusterCIDRs: [],
  nodePortAddresses: [],
  masqueradeAll: false,
  masqueradeBit: 14,
  syncPeriodMs: 30_000,
  minSyncPeriodMs: 1_000,
  udpIdleTimeoutMs: 250,
  // Upstream's v1alpha1 defaults: 32768 per core, at least 131072, 24h established, 1h close-wait;
  // UDP timeouts 0 (leave the kernel's).
  conntrack: {
    maxPerCore: 32768, min: 131072, tcpEstablishedTimeoutMs: 86_400_000, tcpCloseWaitTimeoutMs: 3_600_000,
    tcpBeLiberal: false, udpTimeoutMs: 0, udpStreamTimeoutMs: 0,
  },
  connectTimeoutMs: 500,
  cooldownMs: 10_000,
  drainTimeoutMs: 5_000,
  cleanup: false,
  dryRun: false,
  verbosity: 0,
};

/** A bad flag or config value: exit status 2 with a one-line reason. */
export class ConfigError extends KproxyError {
  constructor(message: string) {
    super('KP_ERR_CONFIG_INVALID', message);
  }
}

export function parseMode(v: string, where: string): ProxyMode {
  if ((PROXY_MODES as readonly string[]).includes(v)) return v as ProxyMode;
  throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where}: must be one of ${PROXY_MODES.join(', ')}`);
}

export function parseScheduler(v: string, where: string): SchedulerName {
  if (isSchedulerName(v)) return v;
  throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where}: must be one of rr, wrr, lc, wlc, sed, nq, dh, sh, lblc, lblcr, mh`);
}

/** "host:port" / "[v6]:port" / ":port"; "" disables. Port 0 disables as upstream. */
export function parseHostPort(v: string, where: string): HostPort | undefined {
  if (v === '') return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(v);
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  const port = m?.[3] === undefined ? NaN : Number(m[3]);
  if (!m || !(port >= 0 && port <= 65535) || (host !== '' && !isIP(host))) {
    throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where}: must be IP:port (for example 0.0.0.0:10256)`);
  }
  if (port === 0) return undefined;
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export function parseCIDRList(v: string | readonly string[], where: string): string[] {
  const items = (typeof v === 'string' ? v.split(',') : [...v]).map((s) => s.trim()).filter((s) => s !== '');
  for (const c of items) {
    if (!parseCIDR(c)) throw new ConfigError(`invalid value ${JSON.stringify(c)} for ${where}: must be a CIDR such as 198.18.0.0/15`);
  }
  return items;
}

export function parseIPValue(v: string, where: string): string {
  if (!isIP(v)) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where}: must be an IP address`);
  return v;
}

/** Cross-field validation (upstream's Validate... functions, for the fields we support). */
export function validateConfig(c: ProxyConfig): void {
  if (c.syncPeriodMs <= 0) throw new ConfigError('invalid value for --iptables-sync-period: must be greater than 0');
  if (c.minSyncPeriodMs < 0) throw new ConfigError('invalid value for --iptables-min-sync-period: must be greater than or equal to 0');
  if (c.minSyncPeriodMs > c.syncPeriodMs) {
    throw new ConfigError(`invalid value for --iptables-min-sync-period: must be less than or equal to --iptables-sync-period (${c.syncPeriodMs}ms)`);
  }
  if (c.udpIdleTimeoutMs <= 0) throw new ConfigError('invalid value for --udp-timeout: must be greater than 0');
  if (!(Number.isInteger(c.masqueradeBit) && c.masqueradeBit >= 0 && c.masqueradeBit <= 31)) {
    throw new ConfigError('invalid value for --iptables-masquerade-bit: must be in the range [0, 31]');
  }
  if (c.hostnameOverride.trim() === '') throw new ConfigError('invalid value for --hostname-override: must not be empty');
  validateConntrack(c.conntrack);
}

/** Upstream's validateKubeProxyConntrackConfiguration (field names as in the file and flags). */
export function validateConntrack(ct: ConntrackSettings): void {
  const nonNegative: [keyof ConntrackSettings, string][] = [
    ['maxPerCore', 'conntrack.maxPerCore (--conntrack-max-per-core)'],
    ['min', 'conntrack.min (--conntrack-min)'],
    ['tcpEstablishedTimeoutMs', 'conntrack.tcpEstablishedTimeout (--conntrack-tcp-timeout-established)'],
    ['tcpCloseWaitTimeoutMs', 'conntrack.tcpCloseWaitTimeout (--conntrack-tcp-timeout-close-wait)'],
    ['udpTimeoutMs', 'conntrack.udpTimeout (--conntrack-udp-timeout)'],
    ['udpStreamTimeoutMs', 'conntrack.udpStreamTimeout (--conntrack-udp-timeout-stream)'],
  ];
  for (const [k, name] of nonNegative) {
    const v = ct[k];
    if (typeof v === 'number' && (!Number.isFinite(v) || v < 0)) throw new ConfigError(`invalid value ${v} for ${name}: must be greater than or equal to 0`);
  }
  for (const k of ['maxPerCore', 'min'] as const) {
    if (!Number.isInteger(ct[k]) || ct[k] > 2 ** 31 - 1) throw new ConfigError(`invalid value ${ct[k]} for conntrack.${k}: must be a 32-bit integer`);
  }
}
