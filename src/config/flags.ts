/**
 * Command-line flags, named as upstream kube-proxy names them where they exist. Unknown flags
 * and bad values raise ConfigError (exit status 2, one line).
 */
import { hostname } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { parseDuration } from './duration.js';
import {
  ConfigError, DEFAULTS, parseCIDRList, parseHostPort, parseIPValue, parseMode, parseScheduler, validateConfig, type ProxyConfig,
} from './config.js';
import { loadConfigFile, type FileConfig } from './file.js';

export const VERSION = '0.1.0';

function duration(flag: string) {
  return (v: string): number => {
    const ms = parseDuration(v);
    if (ms === undefined) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${flag}: must be a duration such as 30s, 1m0s or 250ms`);
    return ms;
  };
}

function count(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?[0-9]+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${flag}: must be an integer`);
    if (n < 0) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${flag}: must be greater than or equal to 0`);
    return n;
  };
}

function buildCommand(): Command {
  const p = new Command('kproxy');
  p.description('kube-proxy, rebuilt in TypeScript: makes Services reach their endpoints on this node.')
    .usage('[flags]\n       kproxy trace --src IP --dst IP --dport N [--protocol tcp|udp|sctp] [--from FILE] [--json]   (see kproxy trace --help)')
    .helpOption('-h, --help', 'show this help and exit')
    .version(VERSION, '--version', 'print the version and exit')
    .addOption(new Option('--proxy-mode <mode>', 'which proxy mode to use: userspace | iptables | ipvs | nftables').argParser((v) => parseMode(v, '--proxy-mode')))
    .option('--manifests <path>', 'read Services, EndpointSlices, Endpoints and Nodes from this YAML/JSON file or folder (watched for changes) instead of a cluster')
    .option('--kubeconfig <path>', 'path to a kubeconfig file with authorization information')
    .option('--master <url>', 'the address of the Kubernetes API server (overrides any value in kubeconfig)')
    .option('--config <path>', 'the path to a KubeProxyConfiguration file; flags given on the command line override its values')
    .option('--hostname-override <name>', "if non-empty, use this string as this node's name instead of the hostname (decides which endpoints are local)")
    .addOption(new Option('--bind-address <ip>', 'the address the userspace proxy ports listen on (0.0.0.0 for all IPv4 interfaces)').argParser((v) => parseIPValue(v, '--bind-address')))
    .addOption(new Option('--healthz-bind-address <ip:port>', 'the IP address and port for the health check server to serve on; empty disables').argParser((v) => ({ value: parseHostPort(v, '--healthz-bind-address') })))
    .addOption(new Option('--metrics-bind-address <ip:port>', 'the IP address and port for the metrics server to serve on; empty disables').argParser((v) => ({ value: parseHostPort(v, '--metrics-bind-address') })))
    .addOption(new Option('--ipvs-scheduler <name>', 'the IPVS scheduler: rr, wrr, lc, wlc, sed, nq, dh, sh, lblc, lblcr, mh (also the default scheduler of userspace mode)').argParser((v) => parseScheduler(v, '--ipvs-scheduler')))
    .addOption(new Option('--ipvs-sync-period <duration>', 'ipvs mode: the maximum interval between full syncs (default: --iptables-sync-period)').argParser(duration('--ipvs-sync-period')))
    .addOption(new Option('--ipvs-min-sync-period <duration>', 'ipvs mode: the minimum interval between syncs (default: --iptables-min-sync-period)').argParser(duration('--ipvs-min-sync-period')))
    .option('--ipvs-strict-arp', 'ipvs mode: set arp_ignore=1 and arp_announce=2 so kube-ipvs0 addresses are not announced')
    .addOption(new Option('--ipvs-exclude-cidrs <cidrs>', 'ipvs mode: comma-separated CIDRs whose virtual servers kproxy never deletes').argParser((v) => parseCIDRList(v, '--ipvs-exclude-cidrs')))
    .addOption(new Option('--ipvs-tcp-timeout <duration>', 'ipvs mode: timeout of idle TCP connections (0 keeps the kernel value)').argParser(duration('--ipvs-tcp-timeout')))
    .addOption(new Option('--ipvs-tcpfin-timeout <duration>', 'ipvs mode: timeout of TCP connections after FIN (0 keeps the kernel value)').argParser(duration('--ipvs-tcpfin-timeout')))
    .addOption(new Option('--ipvs-udp-timeout <duration>', 'ipvs mode: timeout of UDP flows (0 keeps the kernel value)').argParser(duration('--ipvs-udp-timeout')))
    .addOption(new Option('--cluster-cidr <cidrs>', 'comma-separated CIDR ranges of the pods in the cluster; traffic from outside them is masqueraded').argParser((v) => parseCIDRList(v, '--cluster-cidr')))
    .addOption(new Option('--nodeport-addresses <cidrs>', 'comma-separated CIDRs of the node addresses that accept NodePort traffic; empty means all').argParser((v) => parseCIDRList(v, '--nodeport-addresses')))
    .option('--masquerade-all', 'SNAT all traffic sent via Service cluster IPs (kernel modes)')
    .addOption(new Option('--iptables-sync-period <duration>', 'the maximum interval between full syncs of the proxy rules (e.g. 30s, 2m)').argParser(duration('--iptables-sync-period')))
    .addOption(new Option('--iptables-min-sync-period <duration>', 'the minimum interval between syncs when services and endpoints change (e.g. 1s, 0s)').argParser(duration('--iptables-min-sync-period')))
    .addOption(new Option('--udp-timeout <duration>', 'how long an idle UDP flow is kept open in userspace mode (e.g. 250ms, 2s)').argParser(duration('--udp-timeout')))
    .addOption(new Option('--userspace-connect-timeout <duration>', 'userspace mode: how long to wait for an endpoint to accept a connection before trying the next one').argParser(duration('--userspace-connect-timeout')))
    .addOption(new Option('--userspace-failure-cooldown <duration>', 'userspace mode: how long a failed endpoint is passed over before it is tried again').argParser(duration('--userspace-failure-cooldown')))
    .addOption(new Option('--shutdown-drain-timeout <duration>', 'on SIGTERM, how long open connections may finish before they are closed').argParser(duration('--shutdown-drain-timeout')))
    .addOption(new Option('--conntrack-max-per-core <n>', 'kernel modes: maximum NAT connections to track per CPU core (0 leaves nf_conntrack_max as is and ignores --conntrack-min)').argParser(count('--conntrack-max-per-core')))
    .addOption(new Option('--conntrack-min <n>', 'kernel modes: minimum nf_conntrack_max, whatever --conntrack-max-per-core gives').argParser(count('--conntrack-min')))
    .addOption(new Option('--conntrack-tcp-timeout-established <duration>', 'kernel modes: idle timeout of established TCP connections (0 leaves it as is)').argParser(duration('--conntrack-tcp-timeout-established')))
    .addOption(new Option('--conntrack-tcp-timeout-close-wait <duration>', 'kernel modes: how long an idle conntrack entry stays in CLOSE_WAIT (0 leaves it as is)').argParser(duration('--conntrack-tcp-timeout-close-wait')))
    .option('--conntrack-tcp-be-liberal', 'kernel modes: only mark out-of-window TCP packets INVALID instead of dropping them (nf_conntrack_tcp_be_liberal=1)')
    .addOption(new Option('--conntrack-udp-timeout <duration>', 'kernel modes: idle timeout of UNREPLIED UDP conntrack entries (0 leaves it as is)').argParser(duration('--conntrack-udp-timeout')))
    .addOption(new Option('--conntrack-udp-timeout-stream <duration>', 'kernel modes: idle timeout of ASSURED UDP conntrack entries (0 leaves it as is)').argParser(duration('--conntrack-udp-timeout-stream')))
    .option('--write-config-to <path>', 'write the effective configuration as a KubeProxyConfiguration file to this path and exit')
    .option('--cleanup', 'remove every rule and chain kproxy installed, then exit')
    .option('--dry-run', 'kernel modes: print what would be applied and exit without touching the kernel')
    .addOption(new Option('-v, --v <level>', 'log verbosity: 0 quiet, 2 each sync, 4 every connection decision').argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new ConfigError(`invalid value ${JSON.stringify(v)} for -v: must be a non-negative integer`);
      return n;
    }));
  p.exitOverride();
  p.configureOutput({ writeErr: () => undefined });
  p.showSuggestionAfterError(false);
  p.allowExcessArguments(false);
  return p;
}

export type FlagsResult = { kind: 'run'; config: ProxyConfig; writeConfigTo?: string } | { kind: 'exit'; code: number; output: string };

interface RawOpts {
  proxyMode?: ProxyConfig['mode'];
  manifests?: string;
  kubeconfig?: string;
  master?: string;
  config?: string;
  hostnameOverride?: string;
  bindAddress?: string;
  healthzBindAddress?: { value: ProxyConfig['healthzBindAddress'] };
  metricsBindAddress?: { value: ProxyConfig['metricsBindAddress'] };
  ipvsScheduler?: ProxyConfig['ipvsScheduler'];
  ipvsSyncPeriod?: number;
  ipvsMinSyncPeriod?: number;
  ipvsStrictArp?: boolean;
  ipvsExcludeCidrs?: string[];
  ipvsTcpTimeout?: number;
  ipvsTcpfinTimeout?: number;
  ipvsUdpTimeout?: number;
  clusterCidr?: string[];
  nodeportAddresses?: string[];
  masqueradeAll?: boolean;
  iptablesSyncPeriod?: number;
  iptablesMinSyncPeriod?: number;
  udpTimeout?: number;
  userspaceConnectTimeout?: number;
  userspaceFailureCooldown?: number;
  shutdownDrainTimeout?: number;
  conntrackMaxPerCore?: number;
  conntrackMin?: number;
  conntrackTcpTimeoutEstablished?: number;
  conntrackTcpTimeoutCloseWait?: number;
  conntrackTcpBeLiberal?: boolean;
  conntrackUdpTimeout?: number;
  conntrackUdpTimeoutStream?: number;
  cleanup?: boolean;
  writeConfigTo?: string;
  dryRun?: boolean;
  v?: number;
}

/** Parses argv (without node and script) into a validated configuration. */
export function parseFlags(argv: readonly string[]): FlagsResult {
  const cmd = buildCommand();
  let help = '';
  cmd.configureOutput({ writeErr: () => undefined, writeOut: (s) => { help += s; } });
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return { kind: 'exit', code: 0, output: help };
      if (err.cause instanceof ConfigError) throw err.cause;
      throw new ConfigError(err.message.replace(/^error: /, '').replace(/'/g, ''));
    }
    throw err;
  }
  const o = cmd.opts<RawOpts>();
  const file: FileConfig = o.config !== undefined ? loadConfigFile(o.config) : {};
  const pick = <T>(flag: T | undefined, fromFile: T | undefined, def: T): T => flag ?? fromFile ?? def;
  const mode = pick(o.proxyMode, file.mode, DEFAULTS.mode);
  const syncPeriodMs = pick(o.iptablesSyncPeriod, file.syncPeriodMs, DEFAULTS.syncPeriodMs);
  const minSyncPeriodMs = pick(o.iptablesMinSyncPeriod, file.minSyncPeriodMs, DEFAULTS.minSyncPeriodMs);
  // ipvs mode syncs on its own periods when they are given (upstream's ipvs.syncPeriod/minSyncPeriod).
  const ipvsMode = mode === 'ipvs';
  const config: ProxyConfig = {
    mode,
    manifests: o.manifests,
    kubeconfig: pick(o.kubeconfig, file.kubeconfig, undefined),
    master: o.master,
    hostnameOverride: pick(o.hostnameOverride?.toLowerCase(), file.hostnameOverride, hostname().toLowerCase()),
    bindAddress: pick(o.bindAddress, file.bindAddress, DEFAULTS.bindAddress),
    healthzBindAddress: o.healthzBindAddress ? o.healthzBindAddress.value : 'healthzBindAddress' in file ? file.healthzBindAddress : DEFAULTS.healthzBindAddress,
    metricsBindAddress: o.metricsBindAddress ? o.metricsBindAddress.value : 'metricsBindAddress' in file ? file.metricsBindAddress : DEFAULTS.metricsBindAddress,
    ipvsScheduler: pick(o.ipvsScheduler, file.ipvsScheduler, DEFAULTS.ipvsScheduler),
    clusterCIDRs: pick(o.clusterCidr, file.clusterCIDRs, DEFAULTS.clusterCIDRs),
    nodePortAddresses: pick(o.nodeportAddresses, file.nodePortAddresses, DEFAULTS.nodePortAddresses),
    masqueradeAll: pick(o.masqueradeAll, file.masqueradeAll, DEFAULTS.masqueradeAll),
    masqueradeBit: pick(undefined, file.masqueradeBit, DEFAULTS.masqueradeBit),
    syncPeriodMs: ipvsMode ? pick(o.ipvsSyncPeriod, file.ipvsSyncPeriodMs, syncPeriodMs) : syncPeriodMs,
    minSyncPeriodMs: ipvsMode ? pick(o.ipvsMinSyncPeriod, file.ipvsMinSyncPeriodMs, minSyncPeriodMs) : minSyncPeriodMs,
    ipvsStrictARP: pick(o.ipvsStrictArp, file.ipvsStrictARP, DEFAULTS.ipvsStrictARP),
    ipvsExcludeCIDRs: pick(o.ipvsExcludeCidrs, file.ipvsExcludeCIDRs, DEFAULTS.ipvsExcludeCIDRs),
    ipvsTcpTimeoutMs: pick(o.ipvsTcpTimeout, file.ipvsTcpTimeoutMs, DEFAULTS.ipvsTcpTimeoutMs),
    ipvsTcpFinTimeoutMs: pick(o.ipvsTcpfinTimeout, file.ipvsTcpFinTimeoutMs, DEFAULTS.ipvsTcpFinTimeoutMs),
    ipvsUdpTimeoutMs: pick(o.ipvsUdpTimeout, file.ipvsUdpTimeoutMs, DEFAULTS.ipvsUdpTimeoutMs),
    udpIdleTimeoutMs: pick(o.udpTimeout, file.udpIdleTimeoutMs, DEFAULTS.udpIdleTimeoutMs),
    conntrack: {
      maxPerCore: pick(o.conntrackMaxPerCore, file.conntrack?.maxPerCore, DEFAULTS.conntrack.maxPerCore),
      min: pick(o.conntrackMin, file.conntrack?.min, DEFAULTS.conntrack.min),
      tcpEstablishedTimeoutMs: pick(o.conntrackTcpTimeoutEstablished, file.conntrack?.tcpEstablishedTimeoutMs, DEFAULTS.conntrack.tcpEstablishedTimeoutMs),
      tcpCloseWaitTimeoutMs: pick(o.conntrackTcpTimeoutCloseWait, file.conntrack?.tcpCloseWaitTimeoutMs, DEFAULTS.conntrack.tcpCloseWaitTimeoutMs),
      tcpBeLiberal: pick(o.conntrackTcpBeLiberal, file.conntrack?.tcpBeLiberal, DEFAULTS.conntrack.tcpBeLiberal),
      udpTimeoutMs: pick(o.conntrackUdpTimeout, file.conntrack?.udpTimeoutMs, DEFAULTS.conntrack.udpTimeoutMs),
      udpStreamTimeoutMs: pick(o.conntrackUdpTimeoutStream, file.conntrack?.udpStreamTimeoutMs, DEFAULTS.conntrack.udpStreamTimeoutMs),
    },
    connectTimeoutMs: pick(o.userspaceConnectTimeout, undefined, DEFAULTS.connectTimeoutMs),
    cooldownMs: pick(o.userspaceFailureCooldown, undefined, DEFAULTS.cooldownMs),
    drainTimeoutMs: pick(o.shutdownDrainTimeout, undefined, DEFAULTS.drainTimeoutMs),
    cleanup: o.cleanup ?? false,
    dryRun: o.dryRun ?? false,
    verbosity: o.v ?? 0,
  };
  validateConfig(config);
  return o.writeConfigTo !== undefined ? { kind: 'run', config, writeConfigTo: o.writeConfigTo } : { kind: 'run', config };
}
