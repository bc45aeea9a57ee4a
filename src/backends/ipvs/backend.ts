/**
 * IPVS mode: render the snapshot (virtual servers, kube-ipvs0 addresses, ipsets, a constant set
 * of iptables rules), read what the kernel holds, and apply only the differences: one
 * `ipset -exist restore`, one `iptables-restore --noflush`, one `ipvsadm -R` (restore) and one
 * `ip -batch` per sync. Removed TCP real servers drain at weight 0 and are deleted once their
 * connections end (checked on every sync and on a timer). A virtual server the kernel refuses
 * is an error of its service only; a failed tool run fails the sync, which the proxier retries
 * as a full sync.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { errorMessage, KproxyError } from '../../core/errors.js';
import type { ServicePortName } from '../../core/ids.js';
import { parseCIDR, type CIDR } from '../../core/ip.js';
import type { Snapshot } from '../../core/snapshot.js';
import type { Logger } from '../../observability/log.js';
import type { ProxyMetrics } from '../../observability/metrics.js';
import type { Clock, Timer } from '../../platform/clock.js';
import type { Conntrack } from '../../platform/conntrack.js';
import type { Exec } from '../../platform/exec.js';
import type { Iptables } from '../../platform/iptables.js';
import type { Backend } from '../backend.js';
import { UdpConntrackCleaner } from '../conntrack-cleanup.js';
import { JUMP_RULES } from '../iptables/render.js';
import { serializeFull } from '../iptables/serialize.js';
import { parseDeviceAddresses, parseIpsetSave, parseIpvsadmConnections, parseIpvsadmSave } from './kernel-state.js';
import type { IpvsModel, IpvsRenderOptions } from './model.js';
import { DUMMY_DEVICE, IPSETS, IPVS_CHAINS, ipsetName, ipvsSysctls } from './names.js';
import { planIpvs, type IpvsPlan, type KernelState } from './plan.js';
import { IPVS_JUMP_RULES, renderIpvs } from './render.js';
import { serializeDryRun } from './serialize.js';

/** Writes one sysctl (path under /proc/sys). Injected so unit tests never touch the host. */
export type SysctlWriter = (path: string, value: string) => void;

export const procSysctl: SysctlWriter = (path, value) => {
  const file = `/proc/sys/${path}`;
  if (readFileSync(file, 'utf8').trim() !== value) writeFileSync(file, value);
};

export interface IpvsBackendOptions {
  readonly exec: Exec;
  readonly iptables: Iptables;
  readonly conntrack: Conntrack;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly render: IpvsRenderOptions;
  /** --ipvs-exclude-cidrs. */
  readonly excludeCIDRs?: readonly string[];
  /** --ipvs-strict-arp. */
  readonly strictARP?: boolean;
  /** --ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout in ms; 0 keeps the kernel's. */
  readonly timeoutsMs?: { readonly tcp: number; readonly tcpFin: number; readonly udp: number };
  /** How often terminating real servers are checked between syncs (upstream: every minute). Default 2 s. */
  readonly gracefulCheckMs?: number;
  readonly sysctl?: SysctlWriter;
}

/** The kernel refused a service's virtual or real server (e.g. an unknown scheduler module). */
export class IpvsServiceError extends KproxyError {
  constructor(readonly servicePort: ServicePortName, message: string) {
    super('KP_ERR_IPVS_SERVICE_REFUSED', message);
  }
}

export class IpvsBackend implements Backend {
  readonly mode = 'ipvs' as const;
  private readonly conntrack: UdpConntrackCleaner;
  private readonly excludeCIDRs: CIDR[];
  private started = false;
  private synced = false;
  private closed = false;
  private timer: Timer | undefined;
  /** Serializes syncs and graceful checks: both read, diff and write the kernel. */
  private queue: Promise<void> = Promise.resolve();
  private model: IpvsModel | undefined;
  /** Real servers at weight 0 waiting for their connections to end. */
  terminating: ReadonlySet<string> = new Set();
  /** Service ports the kernel refused at the last sync, with its reason. */
  readonly refused = new Map<ServicePortName, string>();

  constructor(private readonly opts: IpvsBackendOptions) {
    this.conntrack = new UdpConntrackCleaner(opts.conntrack, opts.log, opts.metrics);
    this.excludeCIDRs = (opts.excludeCIDRs ?? []).map((t) => parseCIDR(t.trim())).filter((c): c is CIDR => c !== undefined);
  }

  /** The three texts a full sync of this snapshot applies to an empty kernel (for --dry-run). */
  dryRun(snap: Snapshot): string {
    return serializeDryRun(renderIpvs(snap, this.opts.render));
  }

  sync(snap: Snapshot): Promise<void> {
    const run = this.queue.then(() => this.syncNow(snap));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(cmd: string, args: readonly string[], input?: string): Promise<string> {
    const r = await this.opts.exec(cmd, args, input === undefined ? undefined : { input });
    if (r.code !== 0) {
      throw new KproxyError('KP_ERR_IPVS_TOOL', `${cmd} ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    }
    return r.stdout;
  }

  /** Once per process: sysctls and timeouts (upstream's NewProxier). */
  private async start(): Promise<void> {
    const sysctl = this.opts.sysctl ?? procSysctl;
    for (const [path, value] of ipvsSysctls(this.opts.strictARP ?? false)) {
      try {
        sysctl(path, value);
      } catch (err) {
        throw new KproxyError('KP_ERR_IPVS_SYSCTL', `cannot set sysctl ${path}=${value}: ${errorMessage(err)}`, { cause: err });
      }
    }
    const t = this.opts.timeoutsMs;
    if (t && (t.tcp > 0 || t.tcpFin > 0 || t.udp > 0)) {
      const s = (ms: number): string => String(Math.round(ms / 1000));
      try {
        await this.run('ipvsadm', ['--set', s(t.tcp), s(t.tcpFin), s(t.udp)]);
      } catch (err) {
        this.opts.log.error('failed to configure IPVS timeouts', { err: errorMessage(err) });
      }
    }
    this.started = true;
  }

  /** What the kernel holds now: one ipvsadm -Sn, one ipvsadm -Ln, one ipset save, one ip addr. */
  async readKernel(): Promise<KernelState> {
    const servers = parseIpvsadmSave(await this.run('ipvsadm', ['-Sn']));
    const connections = parseIpvsadmConnections(await this.run('ipvsadm', ['-Ln']));
    const ours = new Set(IPSETS.map((s) => ipsetName(s, this.opts.render.family)));
    const all = parseIpsetSave(await this.run('ipset', ['save']));
    const ipsets = new Map([...all].filter(([name]) => ours.has(name)));
    const dev = await this.opts.exec('ip', ['-o', 'addr', 'show', 'dev', DUMMY_DEVICE]);
    const addresses = dev.code === 0 ? parseDeviceAddresses(dev.stdout) : undefined;
    return { servers, connections, ipsets, addresses };
  }

  private async syncNow(snap: Snapshot): Promise<void> {
    if (!this.started) await this.start();
    const model = renderIpvs(snap, this.opts.render);
    const firstSync = !this.synced;
    const kernel = await this.readKernel();
    const family = this.opts.render.family;

    // 1. The dummy interface, then the ipsets (the rules below reference them).
    if (kernel.addresses === undefined) {
      await this.tool('ip', async () => {
        const r = await this.opts.exec('ip', ['link', 'add', DUMMY_DEVICE, 'type', 'dummy']);
        // "File exists": it appeared since it was read (the read may also have failed for another reason).
        if (r.code !== 0 && !/File exists/.test(r.stderr)) {
          throw new KproxyError('KP_ERR_IPVS_TOOL', `ip link add ${DUMMY_DEVICE} type dummy failed (exit ${r.code}): ${r.stderr.trim()}`);
        }
      });
    }
    const plan0 = planIpvs(model, kernel, { excludeCIDRs: this.excludeCIDRs, family });
    if (plan0.ipset.length > 0) await this.tool('ipset', () => this.run('ipset', ['-exist', 'restore'], plan0.ipset.join('\n') + '\n'));
    // 2. The constant-size iptables rules and the jumps into them (upstream rewrites them every sync).
    try {
      await this.opts.iptables.restore(serializeFull(model.iptables), { counters: true });
    } catch (err) {
      this.opts.metrics.iptablesRestoreFailures.inc();
      throw err;
    }
    for (const j of IPVS_JUMP_RULES) await this.opts.iptables.ensureRule(j.table, j.chain, j.args, j.position);
    // 3. Addresses before virtual servers: IPVS only sees packets the kernel delivers locally.
    const batch = [
      ...plan0.addAddresses.map((a) => `addr add ${a}/${a.includes(':') ? 128 : 32} dev ${DUMMY_DEVICE}`),
      ...plan0.removeAddresses.map((a) => `addr del ${a}/${a.includes(':') ? 128 : 32} dev ${DUMMY_DEVICE}`),
    ];
    if (batch.length > 0) await this.tool('ip', () => this.run('ip', ['-force', '-batch', '-'], batch.join('\n') + '\n'));
    // 4. Virtual and real servers, with per-service refusals.
    const plan = await this.applyIpvs(model, plan0, kernel);

    this.model = model;
    this.synced = true;
    this.terminating = plan.terminating;
    this.opts.metrics.ipvsTerminatingRealServers.set(plan.terminating.size);
    for (const [spn, reason] of model.skipped) {
      if (snap.full || snap.changed.has(spn)) this.opts.log.error('service port skipped: not programmed', { servicePort: spn, reason });
    }
    this.opts.metrics.skippedServicePorts.set({ mode: this.mode }, model.skipped.size + this.refused.size);
    this.opts.metrics.iptablesTotal.set({ table: 'nat' }, countRules(model, 'nat'));
    this.opts.metrics.iptablesTotal.set({ table: 'filter' }, countRules(model, 'filter'));
    this.scheduleGracefulCheck();
    await this.conntrack.clean(snap, firstSync);
  }

  private async tool<T>(name: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.opts.metrics.ipvsRestoreFailures.inc({ tool: name });
      throw err;
    }
  }

  /**
   * ipvsadm -R is not atomic and its exit status reflects only its last line, so the result
   * is read back: whatever the kernel still lacks after a run belongs to a service it refused.
   * The first line of the re-computed plan is such a refusal; that service is frozen (left as the
   * kernel has it) and the rest is applied again. Bounded by the number of service ports.
   */
  private async applyIpvs(model: IpvsModel, first: IpvsPlan, kernel0: KernelState): Promise<IpvsPlan> {
    const frozen = new Map<ServicePortName, string>();
    let plan = first;
    let kernel = kernel0;
    let lastErr = '';
    const owners = new Set(model.virtualServers.map((v) => v.owner)).size;
    for (let round = 0; round <= owners + 1 && plan.ipvsadm.length > 0; round++) {
      if (round > 0) {
        const culprit = plan.ipvsadm[0];
        if (culprit?.owner === undefined) {
          this.opts.metrics.ipvsRestoreFailures.inc({ tool: 'ipvsadm' });
          throw new KproxyError('KP_ERR_IPVS_RESTORE', `ipvsadm -R did not apply ${JSON.stringify(culprit?.text ?? '')}: ${lastErr || 'no error reported'}`);
        }
        const reason = `the kernel refused ${JSON.stringify(culprit.text)}${lastErr ? `: ${lastErr}` : ''}`;
        frozen.set(culprit.owner, reason);
        this.opts.log.error('service port not programmed: IPVS refused its virtual server', { servicePort: culprit.owner, reason });
      }
      // `ipvsadm -R`, not the ipvsadm-restore script: the script runs `ipvsadm -C` first (a full flush).
      const r = await this.opts.exec('ipvsadm', ['-R'], { input: plan.ipvsadm.map((l) => l.text).join('\n') + '\n' });
      lastErr = r.code === 0 ? '' : (r.stderr || r.stdout).trim().split('\n')[0] ?? '';
      kernel = { ...kernel, servers: parseIpvsadmSave(await this.run('ipvsadm', ['-Sn'])) };
      plan = planIpvs(model, kernel, { excludeCIDRs: this.excludeCIDRs, family: this.opts.render.family, frozen: new Set(frozen.keys()) });
      // What is left after a clean run is only graceful bookkeeping (weights already at 0).
      if (plan.ipvsadm.length === 0) break;
    }
    if (plan.ipvsadm.length > 0) {
      this.opts.metrics.ipvsRestoreFailures.inc({ tool: 'ipvsadm' });
      throw new KproxyError('KP_ERR_IPVS_RESTORE', `ipvsadm -R left ${plan.ipvsadm.length} changes unapplied: ${lastErr || plan.ipvsadm[0]?.text}`);
    }
    this.refused.clear();
    for (const [k, v] of frozen) this.refused.set(k, v);
    // The bookkeeping of the plan before it ran (what it put at weight 0 or deleted).
    return { ...plan, terminating: first.terminating, drained: first.drained };
  }

  private scheduleGracefulCheck(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.terminating.size === 0 || this.closed) return;
    this.timer = this.opts.clock.setTimer(() => {
      this.timer = undefined;
      const run = this.queue.then(() => this.gracefulCheck());
      this.queue = run.catch((err: unknown) => {
        this.opts.log.error('checking terminating IPVS real servers failed', { err: errorMessage(err) });
      });
    }, this.opts.gracefulCheckMs ?? 2000);
  }

  /** Deletes terminating real servers whose connections ended (same plan as a sync of the last model). */
  async gracefulCheck(): Promise<void> {
    const model = this.model;
    if (!model || this.closed) return;
    const kernel = await this.readKernel();
    const plan = planIpvs(model, kernel, { excludeCIDRs: this.excludeCIDRs, family: this.opts.render.family, frozen: new Set(this.refused.keys()) });
    if (plan.drained.length > 0 || plan.ipvsadm.length > 0) {
      await this.applyIpvs(model, plan, kernel);
      if (plan.drained.length > 0) this.opts.log.info('deleted drained IPVS real servers', { realServers: plan.drained.join(',') }, 2);
    }
    this.terminating = plan.terminating;
    this.opts.metrics.ipvsTerminatingRealServers.set(plan.terminating.size);
    this.scheduleGracefulCheck();
  }

  /** IPVS mode keeps its state on exit (as upstream); --cleanup removes it. */
  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.queue;
  }
}

function countRules(model: IpvsModel, table: 'nat' | 'filter'): number {
  let n = 0;
  for (const r of model.iptables[table].chains.values()) n += r.length;
  return n;
}

/**
 * `--cleanup` for IPVS mode (upstream's CleanupLeftovers): every virtual server (upstream flushes
 * IPVS), kube-ipvs0, the jumps and chains, then the ipsets (they cannot go while rules use them).
 * A machine without IPVS or its tools has nothing of IPVS mode to remove.
 */
export async function removeIpvsRules(exec: Exec, iptables: Iptables): Promise<string[]> {
  const removed: string[] = [];
  const save = await exec('ipvsadm', ['-Sn']);
  if (save.code === 0 && save.stdout.trim() !== '') {
    const r = await exec('ipvsadm', ['-C']);
    if (r.code !== 0) throw new KproxyError('KP_ERR_IPVS_CLEANUP', `ipvsadm -C failed: ${r.stderr.trim()}`);
    removed.push('ipvs/virtual-servers');
  }
  const dev = await exec('ip', ['link', 'show', DUMMY_DEVICE]);
  if (dev.code === 0) {
    const r = await exec('ip', ['link', 'del', DUMMY_DEVICE]);
    if (r.code !== 0) throw new KproxyError('KP_ERR_IPVS_CLEANUP', `ip link del ${DUMMY_DEVICE} failed: ${r.stderr.trim()}`);
    removed.push(`link/${DUMMY_DEVICE}`);
  }
  // Both modes' jumps: the chain names are shared (KUBE-SERVICES, KUBE-PROXY-FIREWALL, ...), so a
  // chain is only removable once no jump of either mode points at it.
  for (const j of [...IPVS_JUMP_RULES, ...JUMP_RULES]) await iptables.deleteRule(j.table, j.chain, j.args);
  for (const table of ['filter', 'nat'] as const) {
    removed.push(...(await iptables.deleteChains(table, IPVS_CHAINS[table])).map((c) => `${table}/${c}`));
  }
  const sets = await exec('ipset', ['list', '-n']);
  if (sets.code === 0) {
    const have = new Set(sets.stdout.split('\n').map((s) => s.trim()));
    for (const family of ['IPv4', 'IPv6'] as const) {
      for (const info of IPSETS) {
        const name = ipsetName(info, family);
        if (!have.has(name)) continue;
        have.delete(name);
        const r = await exec('ipset', ['destroy', name]);
        if (r.code !== 0) throw new KproxyError('KP_ERR_IPVS_CLEANUP', `ipset destroy ${name} failed: ${r.stderr.trim()}`);
        removed.push(`ipset/${name}`);
      }
    }
  }
  return removed;
}
