/**
 * Upstream's validation of a KubeProxyConfiguration (pkg/proxy/apis/config/validation), for the
 * fields kproxy supports. It runs once, on the merged configuration (the --config file, then the
 * flags given on the command line over it), and reports as upstream's field.ErrorList does:
 * `KubeProxyConfiguration.<path>: Invalid value: <value>: <reason>`, every error collected,
 * several printed together as `[e1, e2]`. Paths are the file's field names (the ones an operator
 * can find in the YAML); a value a flag set says so: `(from --flag)`.
 */
import { hostname } from 'node:os';
import { PROXY_MODES, type ProxyMode } from '../backends/backend.js';
import { isSchedulerName, SCHEDULER_NAMES } from '../core/annotations.js';
import { isIP, parseCIDR } from '../core/ip.js';
import { DEFAULTS, type HostPort, type ProxyConfig } from './config.js';
import { formatDuration } from './duration.js';

/** A decoded field's value: durations in milliseconds, lists of strings. */
export type Value = string | number | boolean | readonly string[];

/** The part of the configuration a KubeProxyConfiguration carries. */
export type FileFields = Omit<ProxyConfig, 'manifests' | 'master' | 'connectTimeoutMs' | 'cooldownMs' | 'drainTimeoutMs' | 'cleanup' | 'dryRun' | 'verbosity'>;

/** A value as Go's %v / %q print it in a field error. */
export function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return v === null || v === undefined ? 'null' : JSON.stringify(v);
}

/** Field errors, worded as upstream's field.Error; `origin` names the flag that set a path. */
export class ErrorList {
  readonly errors: string[] = [];
  constructor(private readonly origin: ReadonlyMap<string, string> = new Map()) {}

  private add(path: string, body: string): void {
    const flag = this.origin.get(path.replace(/\[\d+\]$/, ''));
    this.errors.push(`KubeProxyConfiguration${path === '' ? '' : `.${path}`}: ${body}${flag ? ` (from ${flag})` : ''}`);
  }

  /** `shownValue` is already printed (see `shown`, or a duration's Go text). */
  invalid(path: string, shownValue: string, detail: string): void {
    this.add(path, `Invalid value: ${shownValue}: ${detail}`);
  }

  unsupported(path: string, value: unknown, supported: readonly string[]): void {
    this.add(path, `Unsupported value: ${shown(value)}: supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}`);
  }

  required(path: string, detail: string): void {
    this.add(path, `Required value: ${detail}`);
  }

  forbidden(path: string, detail: string): void {
    this.add(path, `Forbidden: ${detail}`);
  }
}

/** utilerrors.Aggregate's text: one error alone, several as "[e1, e2]", repeats dropped. */
export function aggregate(errors: readonly string[]): string {
  const unique = [...new Set(errors)];
  return unique.length === 1 ? (unique[0] ?? '') : `[${unique.join(', ')}]`;
}

/** The section whose sync periods and masquerading a mode uses (upstream's v1alpha1 conversion). */
export function modeSection(mode: Value | undefined): 'iptables' | 'nftables' {
  return mode === 'nftables' ? 'nftables' : 'iptables';
}

function isProxyMode(s: string): s is ProxyMode {
  return (PROXY_MODES as readonly string[]).includes(s);
}

/**
 * Validates decoded values (by field path, e.g. "iptables.syncPeriod") into the configuration;
 * an absent path takes upstream's default. Every problem is added to `errs`; the result is
 * only meaningful when none was.
 */
export function validateConfig(values: ReadonlyMap<string, Value>, errs: ErrorList): FileFields {
  const get = <T extends Value>(path: string, def: T): T => (values.get(path) as T | undefined) ?? def;
  const nonNegativeDuration = (path: string, def: number): number => {
    const ms = get(path, def);
    if (ms < 0) errs.invalid(path, formatDuration(ms), 'must be greater than or equal to 0');
    return ms;
  };
  const nonNegativeCount = (path: string, def: number): number => {
    const n = get(path, def);
    if (n < 0) errs.invalid(path, String(n), 'must be greater than or equal to 0');
    return n;
  };
  const cidrs = (path: string): string[] => {
    const items = get<readonly string[]>(path, []);
    items.forEach((c, i) => {
      if (c === 'primary' && path === 'nodePortAddresses') errs.forbidden(`${path}[${i}]`, '"primary" is not supported by kproxy; list the CIDRs of the node\'s addresses');
      else if (!parseCIDR(c)) errs.invalid(`${path}[${i}]`, shown(c), 'must be a valid CIDR');
    });
    return [...items];
  };
  const hostPort = (path: string, def: HostPort | undefined): HostPort | undefined => {
    if (!values.has(path)) return def;
    const v = get<string>(path, '');
    if (v === '') return undefined;
    const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:[\]]*)$/.exec(v);
    if (!m) {
      errs.invalid(path, shown(v), 'must be IP:port');
      return def;
    }
    const host = m[1] ?? m[2] ?? '';
    const port = /^[0-9]{1,5}$/.test(m[3] ?? '') ? Number(m[3]) : NaN;
    if (host !== '' && !isIP(host)) errs.invalid(path, shown(host), 'must be a valid IP');
    if (!(port >= 0 && port <= 65535)) errs.invalid(path, shown(m[3]), 'must be a valid port');
    // As upstream's flags: port 0 (or "") disables the server; kproxy also reads ":port" as 0.0.0.0.
    return port === 0 ? undefined : { host: host === '' ? '0.0.0.0' : host, port };
  };

  const modeText = get<string>('mode', '');
  const mode = isProxyMode(modeText) ? modeText : DEFAULTS.mode;
  if (modeText !== '' && !isProxyMode(modeText)) {
    errs.invalid('mode', shown(modeText), `must be ${[...PROXY_MODES].sort().join(', ')} or blank (blank means the default proxy [currently ${DEFAULTS.mode}])`);
  }

  // The mode's section gives the sync periods and masquerading; ipvs mode its own periods when set.
  const section = modeSection(mode);
  const periodPath = (f: string): string => (mode === 'ipvs' && values.has(`ipvs.${f}`) ? `ipvs.${f}` : `${section}.${f}`);
  const syncPath = periodPath('syncPeriod');
  const minPath = periodPath('minSyncPeriod');
  const syncPeriodMs = get(syncPath, DEFAULTS.syncPeriodMs);
  const minSyncPeriodMs = get(minPath, DEFAULTS.minSyncPeriodMs);
  if (syncPeriodMs <= 0) errs.invalid(syncPath, formatDuration(syncPeriodMs), 'must be greater than 0');
  if (minSyncPeriodMs < 0) errs.invalid(minPath, formatDuration(minSyncPeriodMs), 'must be greater than or equal to 0');
  if (minSyncPeriodMs > syncPeriodMs) errs.invalid(syncPath, formatDuration(syncPeriodMs), `must be greater than or equal to KubeProxyConfiguration.${minPath}`);
  const masqueradeBit = get(`${section}.masqueradeBit`, DEFAULTS.masqueradeBit);
  if (masqueradeBit < 0 || masqueradeBit > 31) errs.invalid(`${section}.masqueradeBit`, String(masqueradeBit), 'must be within the range [0, 31]');

  const udpIdleTimeoutMs = get('udpIdleTimeout', DEFAULTS.udpIdleTimeoutMs);
  if (udpIdleTimeoutMs <= 0) errs.invalid('udpIdleTimeout', formatDuration(udpIdleTimeoutMs), 'must be greater than 0');

  const bindAddress = get('bindAddress', DEFAULTS.bindAddress);
  if (!isIP(bindAddress)) errs.invalid('bindAddress', shown(bindAddress), 'not a valid textual representation of an IP address');

  const clusterCIDR = get<string>('clusterCIDR', '');
  const clusterCIDRs = clusterCIDR === '' ? [] : clusterCIDR.split(',').map((s) => s.trim());
  const parsed = clusterCIDRs.map((c) => parseCIDR(c));
  if (clusterCIDRs.length > 2) {
    errs.invalid('clusterCIDR', shown(clusterCIDR), 'only one CIDR allowed or a valid DualStack CIDR (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)');
  } else if (clusterCIDRs.length === 2 && (!parsed[0] || !parsed[1] || parsed[0].family === parsed[1].family)) {
    errs.invalid('clusterCIDR', shown(clusterCIDR), 'must be a valid DualStack CIDR (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)');
  } else if (clusterCIDRs.length === 1 && !parsed[0]) {
    errs.invalid('clusterCIDR', shown(clusterCIDR), 'must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48)');
  }

  // Upstream's GetHostname: blank means the host's name; trimmed and lower-cased.
  const hostnameOverride = get<string>('hostnameOverride', '');
  if (hostnameOverride !== '' && hostnameOverride.trim() === '') errs.invalid('hostnameOverride', shown(hostnameOverride), 'must not be empty');

  const scheduler = get<string>('ipvs.scheduler', '');
  if (scheduler !== '' && !isSchedulerName(scheduler)) errs.unsupported('ipvs.scheduler', scheduler, SCHEDULER_NAMES);

  const kubeconfig = get<string>('clientConnection.kubeconfig', '');
  return {
    mode,
    kubeconfig: kubeconfig === '' ? undefined : kubeconfig,
    hostnameOverride: (hostnameOverride.trim() === '' ? hostname() : hostnameOverride).trim().toLowerCase(),
    bindAddress,
    healthzBindAddress: hostPort('healthzBindAddress', DEFAULTS.healthzBindAddress),
    metricsBindAddress: hostPort('metricsBindAddress', DEFAULTS.metricsBindAddress),
    ipvsScheduler: isSchedulerName(scheduler) ? scheduler : DEFAULTS.ipvsScheduler,
    ipvsStrictARP: get('ipvs.strictARP', DEFAULTS.ipvsStrictARP),
    ipvsExcludeCIDRs: cidrs('ipvs.excludeCIDRs'),
    ipvsTcpTimeoutMs: nonNegativeDuration('ipvs.tcpTimeout', DEFAULTS.ipvsTcpTimeoutMs),
    ipvsTcpFinTimeoutMs: nonNegativeDuration('ipvs.tcpFinTimeout', DEFAULTS.ipvsTcpFinTimeoutMs),
    ipvsUdpTimeoutMs: nonNegativeDuration('ipvs.udpTimeout', DEFAULTS.ipvsUdpTimeoutMs),
    clusterCIDRs,
    nodePortAddresses: cidrs('nodePortAddresses'),
    masqueradeAll: get(`${section}.masqueradeAll`, DEFAULTS.masqueradeAll),
    masqueradeBit,
    syncPeriodMs,
    minSyncPeriodMs,
    udpIdleTimeoutMs,
    conntrack: {
      maxPerCore: nonNegativeCount('conntrack.maxPerCore', DEFAULTS.conntrack.maxPerCore),
      min: nonNegativeCount('conntrack.min', DEFAULTS.conntrack.min),
      tcpEstablishedTimeoutMs: nonNegativeDuration('conntrack.tcpEstablishedTimeout', DEFAULTS.conntrack.tcpEstablishedTimeoutMs),
      tcpCloseWaitTimeoutMs: nonNegativeDuration('conntrack.tcpCloseWaitTimeout', DEFAULTS.conntrack.tcpCloseWaitTimeoutMs),
      tcpBeLiberal: get('conntrack.tcpBeLiberal', DEFAULTS.conntrack.tcpBeLiberal),
      udpTimeoutMs: nonNegativeDuration('conntrack.udpTimeout', DEFAULTS.conntrack.udpTimeoutMs),
      udpStreamTimeoutMs: nonNegativeDuration('conntrack.udpStreamTimeout', DEFAULTS.conntrack.udpStreamTimeoutMs),
    },
  };
}
