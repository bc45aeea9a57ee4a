/**
 * KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) files, for the fields kproxy
 * supports. Unknown fields are errors that name the field, as upstream's strict decoding.
 */
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { formatDuration } from './duration.js';
import { parseDuration } from './duration.js';
import { ConfigError, parseCIDRList, parseHostPort, parseIPValue, parseMode, parseScheduler, type ProxyConfig } from './config.js';
import type { ConntrackSettings } from '../platform/conntrack-settings.js';

type Partial<T> = { -readonly [K in keyof T]?: T[K] };

/**
 * What a file sets: any top-level field, conntrack field by field, and ipvs mode's own sync
 * periods (applied only in ipvs mode).
 */
export type FileConfig = Partial<Omit<ProxyConfig, 'conntrack'>> & { conntrack?: Partial<ConntrackSettings>; ipvsSyncPeriodMs?: number; ipvsMinSyncPeriodMs?: number };

const KNOWN: Record<string, readonly string[] | true> = {
  apiVersion: true, kind: true, mode: true, clusterCIDR: true, bindAddress: true, healthzBindAddress: true,
  metricsBindAddress: true, hostnameOverride: true, nodePortAddresses: true, udpIdleTimeout: true,
  iptables: ['syncPeriod', 'minSyncPeriod', 'masqueradeAll', 'masqueradeBit', 'localhostNodePorts'],
  ipvs: ['scheduler', 'syncPeriod', 'minSyncPeriod', 'strictARP', 'excludeCIDRs', 'tcpTimeout', 'tcpFinTimeout', 'udpTimeout'],
  nftables: ['syncPeriod', 'minSyncPeriod', 'masqueradeAll', 'masqueradeBit'],
  clientConnection: ['kubeconfig', 'qps', 'burst', 'contentType', 'acceptContentTypes'],
  conntrack: ['maxPerCore', 'min', 'tcpEstablishedTimeout', 'tcpCloseWaitTimeout', 'tcpBeLiberal', 'udpTimeout', 'udpStreamTimeout'],
  featureGates: true, logging: true, portRange: true, oomScoreAdj: true, configSyncPeriod: true,
  detectLocalMode: true, detectLocal: true, showHiddenMetricsForVersion: true, enableProfiling: true,
  masqueradeAll: true, syncPeriod: true, minSyncPeriod: true,
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function loadConfigFile(path: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read --config ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new ConfigError(`--config ${path}: not valid YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  return configFromObject(raw, path);
}

export function configFromObject(raw: unknown, path: string): FileConfig {
  const where = (f: string): string => `${path}: ${f}`;
  if (!isRecord(raw)) throw new ConfigError(`--config ${path}: must be a KubeProxyConfiguration object`);
  if (raw.kind !== 'KubeProxyConfiguration') throw new ConfigError(`--config ${path}: kind must be KubeProxyConfiguration, got ${JSON.stringify(raw.kind)}`);
  if (raw.apiVersion !== 'kubeproxy.config.k8s.io/v1alpha1') {
    throw new ConfigError(`--config ${path}: apiVersion must be kubeproxy.config.k8s.io/v1alpha1, got ${JSON.stringify(raw.apiVersion)}`);
  }
  for (const [k, v] of Object.entries(raw)) {
    const known = KNOWN[k];
    if (known === undefined) throw new ConfigError(`--config ${path}: unknown field ${JSON.stringify(k)}`);
    if (Array.isArray(known) && isRecord(v)) {
      for (const sub of Object.keys(v)) if (!known.includes(sub)) throw new ConfigError(`--config ${path}: unknown field ${JSON.stringify(`${k}.${sub}`)}`);
    }
  }
  const str = (v: unknown, f: string): string => {
    if (typeof v !== 'string') throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where(f)}: must be a string`);
    return v;
  };
  const dur = (v: unknown, f: string): number => {
    const ms = parseDuration(str(v, f));
    if (ms === undefined) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where(f)}: must be a duration such as 30s`);
    return ms;
  };
  const bool = (v: unknown, f: string): boolean => {
    if (typeof v !== 'boolean') throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where(f)}: must be true or false`);
    return v;
  };
  const out: FileConfig = {};
  if (raw.mode !== undefined && raw.mode !== '') out.mode = parseMode(str(raw.mode, 'mode'), where('mode'));
  if (raw.clusterCIDR !== undefined) out.clusterCIDRs = parseCIDRList(str(raw.clusterCIDR, 'clusterCIDR'), where('clusterCIDR'));
  if (raw.bindAddress !== undefined) out.bindAddress = parseIPValue(str(raw.bindAddress, 'bindAddress'), where('bindAddress'));
  if (raw.healthzBindAddress !== undefined) out.healthzBindAddress = parseHostPort(str(raw.healthzBindAddress, 'healthzBindAddress'), where('healthzBindAddress'));
  if (raw.metricsBindAddress !== undefined) out.metricsBindAddress = parseHostPort(str(raw.metricsBindAddress, 'metricsBindAddress'), where('metricsBindAddress'));
  if (raw.hostnameOverride !== undefined && raw.hostnameOverride !== '') out.hostnameOverride = str(raw.hostnameOverride, 'hostnameOverride').toLowerCase();
  if (raw.nodePortAddresses !== undefined && raw.nodePortAddresses !== null) {
    if (!Array.isArray(raw.nodePortAddresses)) throw new ConfigError(`invalid value for ${where('nodePortAddresses')}: must be a list of CIDRs`);
    out.nodePortAddresses = parseCIDRList(raw.nodePortAddresses.map((x, i) => str(x, `nodePortAddresses[${i}]`)), where('nodePortAddresses'));
  }
  if (raw.udpIdleTimeout !== undefined) out.udpIdleTimeoutMs = dur(raw.udpIdleTimeout, 'udpIdleTimeout');
  // As upstream's v1alpha1 conversion: the sync periods and masquerade settings come from the
  // section of the file's mode (nftables for mode nftables, iptables otherwise; ipvs has its own).
  const section = out.mode === 'nftables' ? 'nftables' : 'iptables';
  const ipt = isRecord(raw[section]) ? raw[section] : {};
  if (ipt.syncPeriod !== undefined) out.syncPeriodMs = dur(ipt.syncPeriod, `${section}.syncPeriod`);
  if (ipt.minSyncPeriod !== undefined) out.minSyncPeriodMs = dur(ipt.minSyncPeriod, `${section}.minSyncPeriod`);
  if (ipt.masqueradeAll !== undefined) out.masqueradeAll = bool(ipt.masqueradeAll, `${section}.masqueradeAll`);
  if (ipt.masqueradeBit !== undefined && ipt.masqueradeBit !== null) {
    if (typeof ipt.masqueradeBit !== 'number') throw new ConfigError(`invalid value for ${where(`${section}.masqueradeBit`)}: must be a number`);
    if (!(Number.isInteger(ipt.masqueradeBit) && ipt.masqueradeBit >= 0 && ipt.masqueradeBit <= 31)) {
      throw new ConfigError(`invalid value ${ipt.masqueradeBit} for ${where(`${section}.masqueradeBit`)}: must be within the range [0, 31]`);
    }
    out.masqueradeBit = ipt.masqueradeBit;
  }
  if (out.syncPeriodMs !== undefined && out.syncPeriodMs <= 0) throw new ConfigError(`invalid value for ${where(`${section}.syncPeriod`)}: must be greater than 0`);
  if (out.minSyncPeriodMs !== undefined && out.minSyncPeriodMs < 0) throw new ConfigError(`invalid value for ${where(`${section}.minSyncPeriod`)}: must be greater than or equal to 0`);
  if (out.syncPeriodMs !== undefined && out.minSyncPeriodMs !== undefined && out.minSyncPeriodMs > out.syncPeriodMs) {
    throw new ConfigError(`invalid value for ${where(`${section}.syncPeriod`)}: must be greater than or equal to ${section}.minSyncPeriod`);
  }
  const ct = isRecord(raw.conntrack) ? raw.conntrack : {};
  const conntrack: Partial<ConntrackSettings> = {};
  const count = (v: unknown, f: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where(f)}: must be an integer`);
    if (v < 0) throw new ConfigError(`invalid value ${v} for ${where(f)}: must be greater than or equal to 0`);
    return v;
  };
  const timeout = (v: unknown, f: string): number => {
    const text = str(v, f);
    const ms = parseDuration(text.replace(/^-/, ''));
    if (ms === undefined) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where(f)}: must be a duration such as 30s`);
    if (text.startsWith('-') && ms > 0) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${where(f)}: must be greater than or equal to 0`);
    return ms;
  };
  if (ct.maxPerCore !== undefined && ct.maxPerCore !== null) conntrack.maxPerCore = count(ct.maxPerCore, 'conntrack.maxPerCore');
  if (ct.min !== undefined && ct.min !== null) conntrack.min = count(ct.min, 'conntrack.min');
  if (ct.tcpEstablishedTimeout !== undefined && ct.tcpEstablishedTimeout !== null) conntrack.tcpEstablishedTimeoutMs = timeout(ct.tcpEstablishedTimeout, 'conntrack.tcpEstablishedTimeout');
  if (ct.tcpCloseWaitTimeout !== undefined && ct.tcpCloseWaitTimeout !== null) conntrack.tcpCloseWaitTimeoutMs = timeout(ct.tcpCloseWaitTimeout, 'conntrack.tcpCloseWaitTimeout');
  if (ct.tcpBeLiberal !== undefined) conntrack.tcpBeLiberal = bool(ct.tcpBeLiberal, 'conntrack.tcpBeLiberal');
  if (ct.udpTimeout !== undefined && ct.udpTimeout !== null) conntrack.udpTimeoutMs = timeout(ct.udpTimeout, 'conntrack.udpTimeout');
  if (ct.udpStreamTimeout !== undefined && ct.udpStreamTimeout !== null) conntrack.udpStreamTimeoutMs = timeout(ct.udpStreamTimeout, 'conntrack.udpStreamTimeout');
  if (Object.keys(conntrack).length > 0) out.conntrack = conntrack;
  const ipvs = isRecord(raw.ipvs) ? raw.ipvs : {};
  if (ipvs.scheduler !== undefined && ipvs.scheduler !== '') out.ipvsScheduler = parseScheduler(str(ipvs.scheduler, 'ipvs.scheduler'), where('ipvs.scheduler'));
  if (ipvs.syncPeriod !== undefined) out.ipvsSyncPeriodMs = dur(ipvs.syncPeriod, 'ipvs.syncPeriod');
  if (ipvs.minSyncPeriod !== undefined) out.ipvsMinSyncPeriodMs = dur(ipvs.minSyncPeriod, 'ipvs.minSyncPeriod');
  if (ipvs.strictARP !== undefined) out.ipvsStrictARP = bool(ipvs.strictARP, 'ipvs.strictARP');
  if (ipvs.excludeCIDRs !== undefined && ipvs.excludeCIDRs !== null) {
    if (!Array.isArray(ipvs.excludeCIDRs)) throw new ConfigError(`invalid value for ${where('ipvs.excludeCIDRs')}: must be a list of CIDRs`);
    out.ipvsExcludeCIDRs = parseCIDRList(ipvs.excludeCIDRs.map((x, i) => str(x, `ipvs.excludeCIDRs[${i}]`)), where('ipvs.excludeCIDRs'));
  }
  if (ipvs.tcpTimeout !== undefined) out.ipvsTcpTimeoutMs = dur(ipvs.tcpTimeout, 'ipvs.tcpTimeout');
  if (ipvs.tcpFinTimeout !== undefined) out.ipvsTcpFinTimeoutMs = dur(ipvs.tcpFinTimeout, 'ipvs.tcpFinTimeout');
  if (ipvs.udpTimeout !== undefined) out.ipvsUdpTimeoutMs = dur(ipvs.udpTimeout, 'ipvs.udpTimeout');
  const cc = isRecord(raw.clientConnection) ? raw.clientConnection : {};
  if (cc.kubeconfig !== undefined && cc.kubeconfig !== '') out.kubeconfig = str(cc.kubeconfig, 'clientConnection.kubeconfig');
  return out;
}

function hostPortText(hp: ProxyConfig['healthzBindAddress']): string {
  if (!hp) return '';
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** The configuration as a KubeProxyConfiguration document (`--write-config-to`); loads back unchanged. */
export function configToYAML(c: ProxyConfig): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: c.mode,
    bindAddress: c.bindAddress,
    healthzBindAddress: hostPortText(c.healthzBindAddress),
    metricsBindAddress: hostPortText(c.metricsBindAddress),
    hostnameOverride: c.hostnameOverride,
    clusterCIDR: c.clusterCIDRs.join(','),
    nodePortAddresses: [...c.nodePortAddresses],
    udpIdleTimeout: formatDuration(c.udpIdleTimeoutMs),
    clientConnection: { kubeconfig: c.kubeconfig ?? '' },
    iptables: {
      masqueradeAll: c.masqueradeAll,
      masqueradeBit: c.masqueradeBit,
      syncPeriod: formatDuration(c.syncPeriodMs),
      minSyncPeriod: formatDuration(c.minSyncPeriodMs),
    },
    nftables: {
      masqueradeAll: c.masqueradeAll,
      masqueradeBit: c.masqueradeBit,
      syncPeriod: formatDuration(c.syncPeriodMs),
      minSyncPeriod: formatDuration(c.minSyncPeriodMs),
    },
    conntrack: {
      maxPerCore: c.conntrack.maxPerCore,
      min: c.conntrack.min,
      tcpEstablishedTimeout: formatDuration(c.conntrack.tcpEstablishedTimeoutMs),
      tcpCloseWaitTimeout: formatDuration(c.conntrack.tcpCloseWaitTimeoutMs),
      tcpBeLiberal: c.conntrack.tcpBeLiberal,
      udpTimeout: formatDuration(c.conntrack.udpTimeoutMs),
      udpStreamTimeout: formatDuration(c.conntrack.udpStreamTimeoutMs),
    },
    ipvs: {
      scheduler: c.ipvsScheduler,
      strictARP: c.ipvsStrictARP,
      excludeCIDRs: [...c.ipvsExcludeCIDRs],
      tcpTimeout: formatDuration(c.ipvsTcpTimeoutMs),
      tcpFinTimeout: formatDuration(c.ipvsTcpFinTimeoutMs),
      udpTimeout: formatDuration(c.ipvsUdpTimeoutMs),
    },
  });
}
