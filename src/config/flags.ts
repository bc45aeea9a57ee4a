/**
 * Command-line flags, named as upstream kube-proxy names them where they exist. As upstream's
 * pflag, a flag's own syntax (a duration, an integer) is checked as it is parsed; every flag
 * that sets a KubeProxyConfiguration field is then laid over the --config file's values and
 * the merged configuration validated once (validation.ts), so a bad value reads the same
 * whether a flag or the file gave it. Unknown flags and bad values raise ConfigError (exit
 * status 2, one line).
 */
import { Command, CommanderError, Option } from 'commander';
import { parseDuration } from './duration.js';
import { ConfigError, DEFAULTS, type ProxyConfig } from './config.js';
import { loadConfigFile, type DecodedConfig } from './file.js';
import { aggregate, ErrorList, modeSection, validateConfig } from './validation.js';

export const VERSION = '0.1.0';

/** A duration flag; `nonNegative` for the flags no configuration field validates. */
function duration(flag: string, nonNegative = false) {
  return (v: string): number => {
    const ms = parseDuration(v);
    if (ms === undefined) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${flag}: must be a duration such as 30s, 1m0s or 250ms`);
    if (nonNegative && ms < 0) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${flag}: must be greater than or equal to 0`);
    return ms;
  };
}

/** An int32 flag (upstream's Int32Var); the range is the configuration's to check. */
function int32(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?[0-9]+$/.test(v.trim()) || n < -(2 ** 31) || n >= 2 ** 31) throw new ConfigError(`invalid value ${JSON.stringify(v)} for ${flag}: must be a 32-bit integer`);
    return n;
  };
}

/** A comma-separated list flag (upstream's StringSliceVar). */
const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter((s) => s !== '');

/**
 * The flags that set a KubeProxyConfiguration field, with the field's path; `%s` is the
 * section of the mode (nftables in nftables mode, iptables otherwise), as upstream applies
 * --iptables-sync-period to whichever proxier runs.
 */
const FIELD_FLAGS: readonly (readonly [flag: string, path: string])[] = [
  ['--proxy-mode', 'mode'], ['--kubeconfig', 'clientConnection.kubeconfig'], ['--hostname-override', 'hostnameOverride'],
  ['--bind-address', 'bindAddress'], ['--healthz-bind-address', 'healthzBindAddress'], ['--metrics-bind-address', 'metricsBindAddress'],
  ['--cluster-cidr', 'clusterCIDR'], ['--nodeport-addresses', 'nodePortAddresses'], ['--udp-timeout', 'udpIdleTimeout'],
  ['--masquerade-all', '%s.masqueradeAll'], ['--iptables-sync-period', '%s.syncPeriod'], ['--iptables-min-sync-period', '%s.minSyncPeriod'],
  ['--ipvs-scheduler', 'ipvs.scheduler'], ['--ipvs-sync-period', 'ipvs.syncPeriod'], ['--ipvs-min-sync-period', 'ipvs.minSyncPeriod'],
  ['--ipvs-strict-arp', 'ipvs.strictARP'], ['--ipvs-exclude-cidrs', 'ipvs.excludeCIDRs'], ['--ipvs-tcp-timeout', 'ipvs.tcpTimeout'],
  ['--ipvs-tcpfin-timeout', 'ipvs.tcpFinTimeout'], ['--ipvs-udp-timeout', 'ipvs.udpTimeout'],
  ['--conntrack-max-per-core', 'conntrack.maxPerCore'], ['--conntrack-min', 'conntrack.min'],
  ['--conntrack-tcp-timeout-established', 'conntrack.tcpEstablishedTimeout'], ['--conntrack-tcp-timeout-close-wait', 'conntrack.tcpCloseWaitTimeout'],
  ['--conntrack-tcp-be-liberal', 'conntrack.tcpBeLiberal'], ['--conntrack-udp-timeout', 'conntrack.udpTimeout'],
  ['--conntrack-udp-timeout-stream', 'conntrack.udpStreamTimeout'],
];

/** commander's option attribute for a flag: --ipvs-tcpfin-timeout → ipvsTcpfinTimeout. */
const attribute = (flag: string): string => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function buildCommand(): Command {
  const p = new Command('kproxy');
  p.description('kube-proxy, rebuilt in TypeScript: makes Services reach their endpoints on this node.')
    .usage('[flags]\n       kproxy trace --src IP --dst IP --dport N [--protocol tcp|udp|sctp] [--from FILE] [--json]   (see kproxy trace --help)')
    .helpOption('-h, --help', 'show this help and exit')
    .version(VERSION, '--version', 'print the version and exit')
    .option('--proxy-mode <mode>', 'which proxy mode to use: userspace | iptables | ipvs | nftables')
    .option('--manifests <path>', 'read Services, EndpointSlices, Endpoints and Nodes from this YAML/JSON file or folder (watched for changes) instead of a cluster')
    .option('--kubeconfig <path>', 'path to a kubeconfig file with authorization information')
    .option('--master <url>', 'the address of the Kubernetes API server (overrides any value in kubeconfig)')
    .option('--config <path>', 'the path to a KubeProxyConfiguration file; flags given on the command line override its values')
    .option('--hostname-override <name>', "if non-empty, use this string as this node's name instead of the hostname (decides which endpoints are local)")
    .option('--bind-address <ip>', 'the address the userspace proxy ports listen on (0.0.0.0 for all IPv4 interfaces)')
    .option('--healthz-bind-address <ip:port>', 'the IP address and port for the health check server to serve on; empty disables')
    .option('--metrics-bind-address <ip:port>', 'the IP address and port for the metrics server to serve on; empty disables')
    .option('--ipvs-scheduler <name>', 'the IPVS scheduler: rr, wrr, lc, wlc, sed, nq, dh, sh, lblc, lblcr, mh (also the default scheduler of userspace mode)')
    .addOption(new Option('--ipvs-sync-period <duration>', 'ipvs mode: the maximum interval between full syncs (default: --iptables-sync-period)').argParser(duration('--ipvs-sync-period')))
    .addOption(new Option('--ipvs-min-sync-period <duration>', 'ipvs mode: the minimum interval between syncs (default: --iptables-min-sync-period)').argParser(duration('--ipvs-min-sync-period')))
    .option('--ipvs-strict-arp', 'ipvs mode: set arp_ignore=1 and arp_announce=2 so kube-ipvs0 addresses are not announced')
    .addOption(new Option('--ipvs-exclude-cidrs <cidrs>', 'ipvs mode: comma-separated CIDRs whose virtual servers kproxy never deletes').argParser(list))
    .addOption(new Option('--ipvs-tcp-timeout <duration>', 'ipvs mode: timeout of idle TCP connections (0 keeps the kernel value)').argParser(duration('--ipvs-tcp-timeout')))
    .addOption(new Option('--ipvs-tcpfin-timeout <duration>', 'ipvs mode: timeout of TCP connections after FIN (0 keeps the kernel value)').argParser(duration('--ipvs-tcpfin-timeout')))
    .addOption(new Option('--ipvs-udp-timeout <duration>', 'ipvs mode: timeout of UDP flows (0 keeps the kernel value)').argParser(duration('--ipvs-udp-timeout')))
    .option('--cluster-cidr <cidrs>', 'comma-separated CIDR ranges of the pods in the cluster; traffic from outside them is masqueraded')
    .addOption(new Option('--nodeport-addresses <cidrs>', 'comma-separated CIDRs of the node addresses that accept NodePort traffic; empty means all').argParser(list))
    .option('--masquerade-all', 'SNAT all traffic sent via Service cluster IPs (kernel modes)')
    .addOption(new Option('--iptables-sync-period <duration>', 'the maximum interval between full syncs of the proxy rules (e.g. 30s, 2m)').argParser(duration('--iptables-sync-period')))
    .addOption(new Option('--iptables-min-sync-period <duration>', 'the minimum interval between syncs when services and endpoints change (e.g. 1s, 0s)').argParser(duration('--iptables-min-sync-period')))
    .addOption(new Option('--udp-timeout <duration>', 'how long an idle UDP flow is kept open in userspace mode (e.g. 250ms, 2s)').argParser(duration('--udp-timeout')))
    .addOption(new Option('--userspace-connect-timeout <duration>', 'userspace mode: how long to wait for an endpoint to accept a connection before trying the next one').argParser(duration('--userspace-connect-timeout', true)))
    .addOption(new Option('--userspace-failure-cooldown <duration>', 'userspace mode: how long a failed endpoint is passed over before it is tried again').argParser(duration('--userspace-failure-cooldown', true)))
    .addOption(new Option('--shutdown-drain-timeout <duration>', 'on SIGTERM, how long open connections may finish before they are closed').argParser(duration('--shutdown-drain-timeout', true)))
    .addOption(new Option('--conntrack-max-per-core <n>', 'kernel modes: maximum NAT connections to track per CPU core (0 leaves nf_conntrack_max as is and ignores --conntrack-min)').argParser(int32('--conntrack-max-per-core')))
    .addOption(new Option('--conntrack-min <n>', 'kernel modes: minimum nf_conntrack_max, whatever --conntrack-max-per-core gives').argParser(int32('--conntrack-min')))
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
  manifests?: string;
  master?: string;
  config?: string;
  userspaceConnectTimeout?: number;
  userspaceFailureCooldown?: number;
  shutdownDrainTimeout?: number;
  cleanup?: boolean;
  writeConfigTo?: string;
  dryRun?: boolean;
  v?: number;
}

const NO_FILE: DecodedConfig = { values: new Map(), errors: [] };

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
  const flags = cmd.opts<Record<string, unknown>>();
  const file = o.config !== undefined ? loadConfigFile(o.config) : NO_FILE;
  // The flags given on the command line, over the file's values, field by field.
  const values = new Map(file.values);
  const origin = new Map<string, string>();
  const section = modeSection((flags.proxyMode as string | undefined) ?? values.get('mode'));
  for (const [flag, path] of FIELD_FLAGS) {
    const v = flags[attribute(flag)] as string | number | boolean | string[] | undefined;
    if (v === undefined) continue;
    values.set(path.replace('%s', section), v);
    origin.set(path.replace('%s', section), flag);
  }
  const errs = new ErrorList(origin);
  const fields = validateConfig(values, errs);
  const errors = [...file.errors, ...errs.errors];
  if (errors.length > 0) throw new ConfigError(`invalid configuration${o.config !== undefined ? ` (--config ${o.config})` : ''}: ${aggregate(errors)}`);
  const config: ProxyConfig = {
    ...fields,
    manifests: o.manifests,
    master: o.master,
    connectTimeoutMs: o.userspaceConnectTimeout ?? DEFAULTS.connectTimeoutMs,
    cooldownMs: o.userspaceFailureCooldown ?? DEFAULTS.cooldownMs,
    drainTimeoutMs: o.shutdownDrainTimeout ?? DEFAULTS.drainTimeoutMs,
    cleanup: o.cleanup ?? false,
    dryRun: o.dryRun ?? false,
    verbosity: o.v ?? 0,
  };
  return o.writeConfigTo !== undefined ? { kind: 'run', config, writeConfigTo: o.writeConfigTo } : { kind: 'run', config };
}
