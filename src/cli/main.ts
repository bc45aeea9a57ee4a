/**
 * kproxy's entry point: flags → configuration → source, proxier, backend, servers. SIGTERM
 * and SIGINT close everything in reverse order (listeners drain, rules are removed).
 */
import { errorMessage, KproxyError } from '../core/errors.js';
import type { Source, SourceProblem } from '../core/events.js';
import { SnapshotBuilder } from '../core/snapshot.js';
import type { Text } from '../core/text.js';
import type { Backend, KernelRenderOptions } from '../backends/backend.js';
import { IptablesBackend, removeIptablesRules } from '../backends/iptables/backend.js';
import { IpvsBackend, removeIpvsRules } from '../backends/ipvs/backend.js';
import { DUMMY_DEVICE } from '../backends/ipvs/names.js';
import { probeIpvsSupport, type IpvsSupport } from '../backends/ipvs/support.js';
import { NftablesBackend, removeNftablesRules } from '../backends/nftables/backend.js';
import { UserspaceBackend, removeUserspaceRules } from '../backends/userspace/backend.js';
import { ConfigError, type ProxyConfig } from '../config/config.js';
import { configToYAML } from '../config/file.js';
import { parseFlags } from '../config/flags.js';
import { fstatSync, writeFileSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { ProxierHealth } from '../observability/health.js';
import { createLogger, type Logger } from '../observability/log.js';
import { ProxyMetrics } from '../observability/metrics.js';
import { serveHealthz, serveMetrics, type RunningServer } from '../observability/servers.js';
import { localAddresses } from '../platform/addresses.js';
import { realClock } from '../platform/clock.js';
import { Conntrack } from '../platform/conntrack.js';
import { applyConntrackSettings, sysHashSize } from '../platform/conntrack-settings.js';
import { availableParallelism } from 'node:os';
import { execSysctl } from '../platform/sysctl.js';
import { realExec, writeText, type Exec } from '../platform/exec.js';
import { Iptables, detectIptablesBackend } from '../platform/iptables.js';
import { traceCommand } from '../netfilter/trace-cli.js';
import { ManifestSource } from '../sources/files/source.js';
import { loggingEventRecorder, type NodeEventRecorder } from '../sources/kubernetes/events.js';
import { Proxier } from '../sync/proxier.js';

export interface Running {
  readonly proxier: Proxier;
  readonly backend: Backend;
  readonly servers: readonly RunningServer[];
  /** Idempotent; resolves when everything is closed. */
  close(): Promise<void>;
}

/** The options every kernel mode renders with (IPv4; kproxy is single-stack for now). */
function kernelRenderOptions(config: ProxyConfig): KernelRenderOptions {
  return {
    nodeName: config.hostnameOverride,
    // kube-ipvs0 holds service addresses, never node addresses (it survives restarts).
    nodeIPs: localAddresses('IPv4', config.nodePortAddresses, [DUMMY_DEVICE]),
    nodePortAddresses: config.nodePortAddresses,
    clusterCIDRs: config.clusterCIDRs.filter((c) => !c.includes(':')),
    masqueradeAll: config.masqueradeAll,
    masqueradeBit: config.masqueradeBit,
    family: 'IPv4',
  };
}

function createBackend(config: ProxyConfig, log: Logger, metrics: ProxyMetrics, exec: Exec, iptablesBinary?: string): Backend {
  switch (config.mode) {
    case 'userspace':
      return new UserspaceBackend({
        clock: realClock, log, metrics, exec,
        defaultScheduler: config.ipvsScheduler,
        bindAddress: config.bindAddress,
        nodePortAddresses: config.nodePortAddresses,
        connectTimeoutMs: config.connectTimeoutMs,
        udpIdleTimeoutMs: config.udpIdleTimeoutMs,
        cooldownMs: config.cooldownMs,
        drainTimeoutMs: config.drainTimeoutMs,
      });
    case 'iptables':
      return new IptablesBackend({
        iptables: new Iptables(iptablesBinary === undefined ? { exec } : { exec, binary: iptablesBinary }),
        conntrack: new Conntrack(exec),
        log, metrics,
        render: { ...kernelRenderOptions(config), localhostNodePorts: false },
      });
    case 'nftables':
      return new NftablesBackend({
        exec, conntrack: new Conntrack(exec), clock: realClock, log, metrics,
        render: kernelRenderOptions(config), staleCleanupMs: config.syncPeriodMs,
      });
    case 'ipvs':
      return new IpvsBackend({
        exec, iptables: new Iptables({ exec }), conntrack: new Conntrack(exec), clock: realClock, log, metrics,
        render: { ...kernelRenderOptions(config), scheduler: config.ipvsScheduler, localAddresses: localAddresses('IPv4', [], [DUMMY_DEVICE]) },
        excludeCIDRs: config.ipvsExcludeCIDRs,
        strictARP: config.ipvsStrictARP,
        timeoutsMs: { tcp: config.ipvsTcpTimeoutMs, tcpFin: config.ipvsTcpFinTimeoutMs, udp: config.ipvsUdpTimeoutMs },
      });
  }
}

/**
 * The mode kproxy really runs: ipvs mode falls back to iptables mode when the machine lacks
 * IPVS support, with one log line naming what is missing (as upstream).
 */
export async function effectiveMode(config: ProxyConfig, log: Logger, probe: () => Promise<IpvsSupport>): Promise<ProxyConfig['mode']> {
  if (config.mode !== 'ipvs') return config.mode;
  const support = await probe();
  if (support.ok) return 'ipvs';
  log.warn(`IPVS proxy mode is not available, running iptables mode instead: missing ${support.missing.join('; ')}`);
  return 'iptables';
}

/**
 * The source the configuration names: manifests, or the cluster (kubeconfig, master or in-cluster,
 * as upstream). The Kubernetes client is loaded only when the cluster is the source: it is most of
 * kproxy's start-up time (seconds on a slow machine, over a minute in the emulated IPVS test VM).
 */
async function createSource(config: ProxyConfig, log: Logger, metrics: ProxyMetrics): Promise<{ source: Source; recorder: NodeEventRecorder }> {
  const report = (source: string, what: string) => (p: SourceProblem): void => {
    metrics.sourceProblems.inc({ source, code: p.code });
    log.error(what, { code: p.code, where: p.where, reason: p.message });
  };
  if (config.manifests !== undefined) {
    const source = new ManifestSource({ path: config.manifests, nodeName: config.hostnameOverride, onProblem: report('files', 'problem in manifests') });
    return { source, recorder: loggingEventRecorder(log) };
  }
  const { KubernetesSource } = await import('../sources/kubernetes/source.js');
  const source = new KubernetesSource({
    kubeconfig: config.kubeconfig, master: config.master, nodeName: config.hostnameOverride, log,
    onProblem: report('kubernetes', 'problem in API objects'),
  });
  return { source, recorder: source.recorder };
}

/** Starts kproxy with a configuration; used by main and by end-to-end tests. */
export async function start(config: ProxyConfig, options: { log?: Logger; exec?: Exec; ipvsSupport?: () => Promise<IpvsSupport> } = {}): Promise<Running> {
  const log = options.log ?? createLogger({ verbosity: config.verbosity });
  const exec = options.exec ?? realExec;
  const metrics = new ProxyMetrics({ processMetrics: true });
  const health = new ProxierHealth(realClock, 2 * config.syncPeriodMs);
  const mode = await effectiveMode(config, log, options.ipvsSupport ?? (() => probeIpvsSupport({ exec })));
  // Upstream sets conntrack limits and timeouts before its proxier starts (kernel modes only:
  // userspace mode relays connections itself). A failure stops kproxy before anything else.
  const warnings: [string, string][] = [];
  if (mode !== 'userspace') {
    const changed = await applyConntrackSettings(config.conntrack, {
      sysctl: execSysctl(exec), cpus: availableParallelism(), hashSize: sysHashSize(),
      warn: (reason, message) => { warnings.push([reason, message]); log.warn(message, { reason }); },
      info: (message, kv) => log.info(message, kv),
    });
    if (changed.length > 0) log.info('conntrack settings applied', { changed: changed.join(',') });
  }
  let iptablesBinary: string | undefined;
  if (mode === 'iptables') {
    const choice = await detectIptablesBackend(exec);
    iptablesBinary = choice.binary;
    log.info('iptables backend chosen', { binary: choice.binary, reason: choice.reason });
  }
  const backend = createBackend({ ...config, mode }, log, metrics, exec, iptablesBinary);
  const { source, recorder } = await createSource(config, log, metrics);
  const proxier = new Proxier({
    backend, nodeName: config.hostnameOverride, clock: realClock, sources: [source.name],
    minSyncPeriodMs: config.minSyncPeriodMs, syncPeriodMs: config.syncPeriodMs, metrics, health, log,
  });
  const servers: RunningServer[] = [];
  const closeAll = async (): Promise<void> => {
    await source.close();
    await proxier.close();
    for (const s of servers.reverse()) await s.close();
  };
  try {
    if (config.healthzBindAddress) servers.push(await serveHealthz(config.healthzBindAddress, health));
    if (config.metricsBindAddress) servers.push(await serveMetrics(config.metricsBindAddress, metrics, () => backend.mode, health));
    log.info('starting kproxy', { mode: backend.mode, node: config.hostnameOverride, source: source.name });
    await source.start(proxier.handle);
    // Upstream's birth cry, once everything is started.
    for (const [reason, message] of warnings) recorder.eventf('Warning', reason, 'StartKubeProxy', message);
    recorder.eventf('Normal', 'Starting', 'StartKubeProxy', '');
  } catch (err) {
    await closeAll();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return { proxier, backend, servers, close: () => (closing ??= closeAll()) };
}

/** Reads the source once (until it is synced) and returns what a full sync would apply. */
export async function dryRun(config: ProxyConfig, log: Logger): Promise<Text> {
  const metrics = new ProxyMetrics();
  const backend = createBackend(config, log, metrics, realExec);
  if (!backend.dryRun) throw new KproxyError('KP_ERR_MODE_UNAVAILABLE', `--dry-run is not available for --proxy-mode ${config.mode}`);
  const builder = new SnapshotBuilder(config.hostnameOverride);
  const { source } = await createSource(config, log, metrics);
  try {
    await new Promise<void>((resolve, reject) => {
      source.start((ev) => {
        if (ev.kind === 'synced') resolve();
        else builder.handle(ev);
      }).catch(reject);
    });
  } finally {
    await source.close();
  }
  return backend.dryRun(builder.next());
}

/**
 * Writes a text to stdout in chunks, as a sync writes it to the tool: it is never held whole.
 * Into a file (or /dev/null), the chunks go through one reused Buffer: process.stdout would copy
 * each into a new Buffer, and the dead Buffers, outside the JS heap, pile up to ~60 MB before a
 * collection frees them (a 10,000-service nftables dry run peaked at 298 MB into a file, 242 MB
 * into a pipe).
 */
async function printText(text: Text): Promise<void> {
  const st = fstatSync(1);
  if (isatty(1) || st.isFIFO() || st.isSocket()) {
    await writeText(process.stdout, text);
    return;
  }
  let buf = Buffer.alloc(0);
  for (const chunk of typeof text === 'string' ? [text] : text) {
    const size = Buffer.byteLength(chunk);
    if (buf.length < size) buf = Buffer.allocUnsafe(Math.max(size, 2 * buf.length));
    buf.write(chunk);
    for (let at = 0; at < size; ) at += writeSync(1, buf, at, size - at);
  }
}

/** `--cleanup`: removes everything any mode installed, reporting what it removed. */
export async function cleanup(log: Logger, exec: Exec): Promise<number> {
  let failed = false;
  const ipt = new Iptables({ exec });
  const removers: [string, () => Promise<string[]>][] = [
    ['userspace', () => removeUserspaceRules(ipt)],
    // IPVS first: it removes both kernel modes' jumps before the chains they share.
    ['ipvs', () => removeIpvsRules(exec, ipt)],
    ['iptables', () => removeIptablesRules(ipt)],
    ['nftables', () => removeNftablesRules(exec)],
  ];
  // iptables and IPVS mode share chains (KUBE-MARK-MASQ, KUBE-PROXY-FIREWALL, ...): whichever runs
  // first may find one still referenced by the other's rules. A remover that failed is run once
  // more after the others, when what held its chains is gone.
  let pending = removers;
  for (let pass = 1; pass <= 2 && pending.length > 0; pass++) {
    const retry: typeof removers = [];
    for (const [mode, remove] of pending) {
      try {
        const removed = await remove();
        log.info('cleanup done', { mode, removedChains: removed.join(',') || 'none' });
      } catch (err) {
        if (pass === 1) {
          retry.push([mode, remove]);
          log.info('cleanup incomplete; retrying after the other modes', { mode, err: errorMessage(err) });
        } else {
          failed = true;
          log.error('cleanup failed', { mode, err: errorMessage(err) });
        }
      }
    }
    pending = retry;
  }
  return failed ? 1 : 0;
}

/** Runs the CLI; resolves with the exit code once kproxy has stopped. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'trace') {
    return traceCommand(argv.slice(1), {
      exec: realExec,
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
      hostAddresses: (family) => localAddresses(family),
    });
  }
  let config: ProxyConfig;
  try {
    const r = parseFlags(argv);
    if (r.kind === 'exit') {
      process.stdout.write(r.output);
      return r.code;
    }
    config = r.config;
    if (r.writeConfigTo !== undefined) {
      writeFileSync(r.writeConfigTo, configToYAML(config));
      return 0;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kproxy: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger({ verbosity: config.verbosity });
  if (config.cleanup) return cleanup(log, realExec);
  if (config.dryRun) {
    if (config.mode === 'userspace') {
      process.stderr.write('kproxy: --dry-run applies to the kernel modes (iptables, ipvs, nftables); userspace mode installs no rule set to print\n');
      return 2;
    }
    try {
      await printText(await dryRun(config, log));
      return 0;
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`kproxy: ${err.message}\n`);
        return 2;
      }
      log.error('dry run failed', { err: errorMessage(err) });
      return 1;
    }
  }
  let running: Running;
  try {
    running = await start(config, { log });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kproxy: ${err.message}\n`);
      return 2;
    }
    log.error('kproxy failed to start', { err: errorMessage(err) });
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down: draining connections and removing rules', { signal });
      running.close().then(() => resolve(0), (err: unknown) => {
        log.error('error during shutdown', { err: errorMessage(err) });
        resolve(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
