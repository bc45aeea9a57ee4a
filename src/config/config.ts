/**
 * kproxy's configuration: one typed object with upstream's defaults, built from a
 * KubeProxyConfiguration file and/or flags (flags given on the command line win) and validated
 * once, as upstream does (validation.ts).
 */
import type { SchedulerName } from '../core/annotations.js';
import { KproxyError } from '../core/errors.js';
import type { ProxyMode } from '../backends/backend.js';
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

/** A bad flag, config file or value: exit status 2 with a one-line reason. */
export class ConfigError extends KproxyError {
  constructor(message: string) {
    super('KP_ERR_CONFIG_INVALID', message);
  }
}
