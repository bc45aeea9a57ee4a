/**
 * KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) files, for the fields kproxy
 * supports: decoded strictly, as upstream's decoder, into values by field path. Unknown fields
 * are named as upstream's strict decoding names them (`strict decoding error: unknown field
 * "iptables.syncPeriodd"`); a value of the wrong type is a field error naming its path. The
 * values are validated with the flags over them (validation.ts), all errors reported together.
 */
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { formatDuration, parseDuration } from './duration.js';
import { ConfigError, type ProxyConfig } from './config.js';
import { ErrorList, shown, type Value } from './validation.js';

/** What a field holds; `ignored` fields are accepted (upstream has them) and have no effect. */
type Kind = 'string' | 'duration' | 'int32' | 'bool' | 'strings' | 'ignored';

const API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
const KIND = 'KubeProxyConfiguration';

const SCHEMA: Record<string, Kind | Record<string, Kind>> = {
  apiVersion: 'ignored', kind: 'ignored', mode: 'string', clusterCIDR: 'string', bindAddress: 'string', healthzBindAddress: 'string',
  metricsBindAddress: 'string', hostnameOverride: 'string', nodePortAddresses: 'strings', udpIdleTimeout: 'duration',
  iptables: { syncPeriod: 'duration', minSyncPeriod: 'duration', masqueradeAll: 'bool', masqueradeBit: 'int32', localhostNodePorts: 'bool' },
  ipvs: {
    scheduler: 'string', syncPeriod: 'duration', minSyncPeriod: 'duration', strictARP: 'bool', excludeCIDRs: 'strings',
    tcpTimeout: 'duration', tcpFinTimeout: 'duration', udpTimeout: 'duration',
  },
  nftables: { syncPeriod: 'duration', minSyncPeriod: 'duration', masqueradeAll: 'bool', masqueradeBit: 'int32' },
  clientConnection: { kubeconfig: 'string', qps: 'ignored', burst: 'ignored', contentType: 'ignored', acceptContentTypes: 'ignored' },
  conntrack: {
    maxPerCore: 'int32', min: 'int32', tcpEstablishedTimeout: 'duration', tcpCloseWaitTimeout: 'duration', tcpBeLiberal: 'bool',
    udpTimeout: 'duration', udpStreamTimeout: 'duration',
  },
  featureGates: 'ignored', logging: 'ignored', portRange: 'ignored', oomScoreAdj: 'ignored', configSyncPeriod: 'ignored',
  detectLocalMode: 'ignored', detectLocal: 'ignored', showHiddenMetricsForVersion: 'ignored', enableProfiling: 'ignored',
  masqueradeAll: 'ignored', syncPeriod: 'ignored', minSyncPeriod: 'ignored',
};

/** A decoded file: values by field path ("mode", "iptables.syncPeriod"), and what was wrong. */
export interface DecodedConfig {
  readonly values: Map<string, Value>;
  readonly errors: readonly string[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One field's value, or undefined (with an error) when it is of the wrong type. */
function decodeField(kind: Exclude<Kind, 'ignored'>, v: unknown, path: string, errs: ErrorList): Value | undefined {
  switch (kind) {
    case 'string':
      if (typeof v === 'string') return v;
      break;
    case 'bool':
      if (typeof v === 'boolean') return v;
      break;
    case 'int32':
      if (typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) return v;
      break;
    case 'duration': {
      const ms = typeof v === 'string' ? parseDuration(v) : undefined;
      if (ms !== undefined) return ms;
      errs.invalid(path, shown(v), 'must be a duration such as 30s, 1m0s or 250ms');
      return undefined;
    }
    case 'strings': {
      if (!Array.isArray(v)) break;
      const bad = v.map((x, i) => [x, i] as const).filter(([x]) => typeof x !== 'string');
      for (const [x, i] of bad) errs.invalid(`${path}[${i}]`, shown(x), 'must be of type string');
      return bad.length === 0 ? (v as string[]) : undefined;
    }
  }
  errs.invalid(path, shown(v), `must be of type ${kind === 'strings' ? '[]string' : kind}`);
  return undefined;
}

/** Decodes a parsed KubeProxyConfiguration document strictly. */
export function decodeConfig(raw: unknown): DecodedConfig {
  const values = new Map<string, Value>();
  const errs = new ErrorList();
  const unknown: string[] = [];
  if (!isRecord(raw)) {
    errs.invalid('', shown(raw), 'must be of type object');
    return { values, errors: errs.errors };
  }
  for (const [field, want] of [['apiVersion', API_VERSION], ['kind', KIND]] as const) {
    if (raw[field] === undefined || raw[field] === null || raw[field] === '') errs.required(field, `must be ${want}`);
    else if (raw[field] !== want) errs.unsupported(field, raw[field], [want]);
  }
  const walk = (obj: Record<string, unknown>, schema: Record<string, Kind | Record<string, Kind>>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix + k;
      const kind = schema[k];
      if (kind === undefined) unknown.push(`unknown field ${JSON.stringify(path)}`);
      else if (v === null || kind === 'ignored') continue;
      else if (typeof kind === 'object') {
        if (isRecord(v)) walk(v, kind, `${path}.`);
        else errs.invalid(path, shown(v), 'must be of type object');
      } else {
        const d = decodeField(kind, v, path, errs);
        if (d !== undefined) values.set(path, d);
      }
    }
  };
  walk(raw, SCHEMA, '');
  // Upstream's runtime.NewStrictDecodingError: one error naming every unknown field.
  const errors = unknown.length > 0 ? [`strict decoding error: ${unknown.join(', ')}`, ...errs.errors] : errs.errors;
  return { values, errors };
}

/** Reads and decodes a --config file; unreadable or unparsable files are ConfigErrors at once. */
export function loadConfigFile(path: string): DecodedConfig {
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
  return decodeConfig(raw);
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
