/**
 * userspace mode: kproxy itself accepts every connection to a service and relays it to an
 * endpoint chosen by an IPVS scheduler. Addresses it can bind (loopback, or addresses of this
 * host) are bound directly and need no rules; for the others it opens a proxy port and
 * installs nat REDIRECT "portal" rules, as upstream's userspace proxier did.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { SchedulerName } from '../../core/annotations.js';
import { errorMessage } from '../../core/errors.js';
import type { ServicePortName } from '../../core/ids.js';
import { ipFamily } from '../../core/ip.js';
import type { Protocol } from '../../core/objects.js';
import type { ServicePort } from '../../core/service-port.js';
import type { Snapshot } from '../../core/snapshot.js';
import { categorizeEndpoints, nodeTopology } from '../../core/traffic-policy.js';
import type { Logger } from '../../observability/log.js';
import type { ProxyMetrics } from '../../observability/metrics.js';
import { localAddresses } from '../../platform/addresses.js';
import type { Clock } from '../../platform/clock.js';
import type { Exec } from '../../platform/exec.js';
import { Iptables } from '../../platform/iptables.js';
import type { Backend } from '../backend.js';
import { Balancer, type Dest } from './balancer.js';
import { ConnectionSet, RELAY_SOCKET_OPTIONS, UDPRelay, relayTCP, type RelayOptions, type RelayTarget } from './relay.js';
import { USERSPACE_CHAINS, USERSPACE_JUMPS, renderPortals, type Portal } from './rules.js';

export interface UserspaceOptions {
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly exec: Exec;
  readonly defaultScheduler: SchedulerName;
  /** Address the proxy ports (for REDIRECTed addresses) listen on. */
  readonly bindAddress: string;
  /** CIDRs whose local addresses serve NodePorts; empty means every address. */
  readonly nodePortAddresses: readonly string[];
  readonly connectTimeoutMs: number;
  readonly udpIdleTimeoutMs: number;
  readonly cooldownMs: number;
  /** On close, how long open connections may finish before they are cut. */
  readonly drainTimeoutMs: number;
  readonly iptablesBinary?: string;
}

type Role = 'internal' | 'external';

/** One address:port:protocol a service port is reachable at. */
interface Frontend {
  readonly spn: ServicePortName;
  readonly role: Role;
  readonly ip: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** Node ports listen on wildcard/node addresses and never need portal rules. */
  readonly nodePort: boolean;
}

interface Listener {
  readonly key: string;
  readonly protocol: Protocol;
  /** The port it actually listens on. */
  readonly port: number;
  close(drainMs: number): Promise<void>;
}

const frontendKey = (f: { protocol: Protocol; ip: string; port: number }): string => `${f.protocol}|${f.ip}|${f.port}`;
const balancerKey = (spn: ServicePortName, role: Role): string => `${spn}|${role}`;

export class UserspaceBackend implements Backend {
  readonly mode = 'userspace' as const;
  private readonly balancers = new Map<string, Balancer>();
  /** Frontends served by a direct listener, keyed by frontendKey. */
  private readonly direct = new Map<string, { frontend: Frontend; listener: Listener }>();
  /** Proxy-port listeners for REDIRECTed frontends, keyed by balancer key + protocol. */
  private readonly proxyPorts = new Map<string, Listener>();
  /** Frontends served through portals, keyed by frontendKey. */
  private readonly redirected = new Map<string, Frontend>();
  /** Frontends that could not be served, with why (retried every sync). */
  private readonly failed = new Map<string, string>();
  private readonly iptables: Iptables;
  private installedPortals: string | undefined;
  private jumpsInstalled = false;
  private closed = false;
  private readonly relayOpts: RelayOptions;

  constructor(private readonly opts: UserspaceOptions) {
    this.iptables = new Iptables({ exec: opts.exec, ...(opts.iptablesBinary ? { binary: opts.iptablesBinary } : {}) });
    this.relayOpts = {
      connectTimeoutMs: opts.connectTimeoutMs,
      udpIdleTimeoutMs: opts.udpIdleTimeoutMs,
      log: opts.log,
      onResult: (sp, protocol, result) => opts.metrics.userspaceConnectionsTotal.inc({ service_port: sp, protocol, result }),
      onFailure: (sp, endpoint) => opts.metrics.userspaceEndpointFailures.inc({ service_port: sp, endpoint }),
    };
  }

  /** What the userspace "model" is: every frontend and how it is served (for tests and --dry-run). */
  get state(): { direct: string[]; redirected: string[]; failed: Map<string, string>; proxyPorts: Map<string, number> } {
    return {
      direct: [...this.direct.keys()].sort(),
      redirected: [...this.redirected.keys()].sort(),
      failed: new Map(this.failed),
      proxyPorts: new Map([...this.proxyPorts].map(([k, l]) => [k, l.port])),
    };
  }

  balancer(spn: ServicePortName, role: Role = 'internal'): Balancer | undefined {
    return this.balancers.get(balancerKey(spn, role));
  }

  async sync(snap: Snapshot): Promise<void> {
    if (this.closed) return;
    // 1. Balancers: endpoints and scheduler per service port (and per role when policies differ).
    const touched = snap.full ? new Set(snap.servicePorts.keys()) : new Set(snap.changed);
    for (const spn of touched) {
      const sp = snap.servicePorts.get(spn);
      if (!sp) {
        this.dropBalancers(spn);
        continue;
      }
      const cat = categorizeEndpoints(sp, snap.endpoints.get(spn) ?? [], { topology: nodeTopology(snap.nodeName, snap.node) });
      const scheduler = sp.scheduler ?? this.opts.defaultScheduler;
      this.ensureBalancer(sp, 'internal', scheduler).setEndpoints(cat.internalEndpoints);
      if (this.hasExternal(sp)) this.ensureBalancer(sp, 'external', scheduler).setEndpoints(cat.externalEndpoints);
      else this.dropBalancer(balancerKey(spn, 'external'));
    }
    for (const key of [...this.balancers.keys()]) {
      const spn = key.slice(0, key.lastIndexOf('|')) as ServicePortName;
      if (!snap.servicePorts.has(spn)) this.balancers.delete(key);
    }

    // 2. Listeners: the frontends every service port should be reachable at.
    const want = new Map<string, Frontend>();
    for (const sp of snap.servicePorts.values()) for (const f of this.frontendsOf(sp)) if (!want.has(frontendKey(f))) want.set(frontendKey(f), f);
    for (const [key, d] of [...this.direct]) {
      const w = want.get(key);
      if (!w || w.spn !== d.frontend.spn || w.role !== d.frontend.role) {
        this.direct.delete(key);
        void d.listener.close(this.opts.drainTimeoutMs);
      }
    }
    for (const key of [...this.redirected.keys()]) {
      const w = want.get(key);
      if (!w || w.nodePort) this.redirected.delete(key);
    }
    for (const key of [...this.failed.keys()]) if (!want.has(key)) this.failed.delete(key);
    for (const [key, f] of want) {
      if (this.direct.has(key)) continue;
      const r = this.redirected.get(key);
      if (r && r.spn === f.spn && r.role === f.role) continue;
      await this.serve(key, f);
    }
    // Proxy ports no longer needed by any redirected frontend.
    const neededProxy = new Set([...this.redirected.values()].map((f) => `${balancerKey(f.spn, f.role)}|${f.protocol}`));
    for (const [k, l] of [...this.proxyPorts]) {
      if (!neededProxy.has(k)) {
        this.proxyPorts.delete(k);
        void l.close(this.opts.drainTimeoutMs);
      }
    }

    // 3. Portal rules for the redirected frontends (atomic restore; only when they changed).
    await this.syncPortals();
    const failures = [...this.failed.entries()];
    if (failures.length > 0) {
      this.opts.log.warn('some service addresses are not served; retrying at every sync', { count: failures.length, first: `${failures[0]?.[0]}: ${failures[0]?.[1]}` });
    }
  }

  private hasExternal(sp: ServicePort): boolean {
    return sp.nodePort > 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;
  }

  private ensureBalancer(sp: ServicePort, role: Role, scheduler: SchedulerName): Balancer {
    const key = balancerKey(sp.name, role);
    let b = this.balancers.get(key);
    if (!b) {
      b = new Balancer({
        scheduler,
        affinityTimeoutSeconds: sp.affinityTimeoutSeconds,
        clock: this.opts.clock,
        cooldownMs: this.opts.cooldownMs,
        onCount: (d: Dest) => this.opts.metrics.userspaceActiveConnections.set(
          { service_port: sp.name, protocol: sp.protocol, endpoint: d.key }, d.activeConns + d.inactiveConns),
      });
      this.balancers.set(key, b);
    } else {
      b.configure(scheduler, sp.affinityTimeoutSeconds);
    }
    return b;
  }

  private dropBalancer(key: string): void {
    this.balancers.delete(key);
  }

  private dropBalancers(spn: ServicePortName): void {
    this.dropBalancer(balancerKey(spn, 'internal'));
    this.dropBalancer(balancerKey(spn, 'external'));
  }

  private frontendsOf(sp: ServicePort): Frontend[] {
    const out: Frontend[] = [];
    const base = { spn: sp.name, port: sp.port, protocol: sp.protocol, nodePort: false };
    if (sp.clusterIP !== '' && sp.clusterIP !== 'None') out.push({ ...base, role: 'internal', ip: sp.clusterIP });
    for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs]) out.push({ ...base, role: 'external', ip });
    if (sp.nodePort > 0) {
      for (const ip of this.nodePortIPs()) out.push({ ...base, role: 'external', ip, port: sp.nodePort, nodePort: true });
    }
    return out;
  }

  private nodePortIPs(): string[] {
    return this.opts.nodePortAddresses.length === 0 ? ['0.0.0.0'] : localAddresses('IPv4', this.opts.nodePortAddresses);
  }

  private target(f: Frontend, vip: string): RelayTarget {
    const key = balancerKey(f.spn, f.role);
    return {
      balancer: () => this.balancers.get(key),
      servicePort: f.spn,
      vip,
      vport: f.port,
      protocol: f.protocol,
    };
  }

  /** Binds the frontend directly; if the address is not local, serves it through a portal. */
  private async serve(key: string, f: Frontend): Promise<void> {
    if (f.protocol === 'SCTP') {
      this.fail(key, f, 'SCTP is not supported in userspace mode (Node.js has no SCTP sockets)');
      return;
    }
    try {
      const listener = await this.listen(f.protocol, f.ip, f.port, this.target(f, f.ip), key);
      this.direct.set(key, { frontend: f, listener });
      this.failed.delete(key);
      this.opts.log.info('serving service address', { servicePort: f.spn, address: `${f.ip}:${f.port}/${f.protocol}` }, 2);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRNOTAVAIL' || f.nodePort) {
        this.fail(key, f, describeListenError(err));
        return;
      }
    }
    if (ipFamily(f.ip) !== 'IPv4') {
      this.fail(key, f, 'the address is not local and userspace portals support IPv4 only');
      return;
    }
    const pk = `${balancerKey(f.spn, f.role)}|${f.protocol}`;
    if (!this.proxyPorts.has(pk)) {
      try {
        this.proxyPorts.set(pk, await this.listen(f.protocol, this.opts.bindAddress, 0, this.target(f, f.ip), pk));
      } catch (err) {
        this.fail(key, f, `cannot open a proxy port on ${this.opts.bindAddress}: ${describeListenError(err)}`);
        return;
      }
    }
    this.redirected.set(key, f);
    this.failed.delete(key);
  }

  private fail(key: string, f: Frontend, why: string): void {
    if (this.failed.get(key) !== why) {
      this.opts.log.error('cannot serve service address', { servicePort: f.spn, address: `${f.ip}:${f.port}/${f.protocol}`, reason: why });
    }
    this.failed.set(key, why);
  }

  private listen(protocol: Protocol, ip: string, port: number, target: RelayTarget, key: string): Promise<Listener> {
    return protocol === 'UDP' ? this.listenUDP(ip, port, target, key) : this.listenTCP(ip, port, target, key);
  }

  private listenTCP(ip: string, port: number, target: RelayTarget, key: string): Promise<Listener> {
    const conns = new ConnectionSet();
    const server = net.createServer({ pauseOnConnect: true, ...RELAY_SOCKET_OPTIONS }, (sock) => relayTCP(sock, target, this.relayOpts, conns));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ip, port, exclusive: true }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.opts.log.error('listener error', { address: `${ip}:${port}`, err: errorMessage(err) }));
        const addr = server.address();
        const actual = addr !== null && typeof addr === 'object' ? addr.port : port;
        let closing: Promise<void> | undefined;
        resolve({
          key, protocol: 'TCP', port: actual,
          close: (drainMs) => (closing ??= new Promise<void>((done) => {
            server.close();
            if (conns.size === 0) return done();
            const deadline = setTimeout(() => { conns.destroyAll(); done(); }, drainMs);
            const poll = setInterval(() => {
              if (conns.size === 0) {
                clearInterval(poll);
                clearTimeout(deadline);
                done();
              }
            }, 50);
          })),
        });
      });
    });
  }

  private listenUDP(ip: string, port: number, target: RelayTarget, key: string): Promise<Listener> {
    const socket = dgram.createSocket({ type: ipFamily(ip) === 'IPv6' ? 'udp6' : 'udp4' });
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: ip, port, exclusive: true }, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.opts.log.error('listener error', { address: `${ip}:${port}/UDP`, err: errorMessage(err) }));
        const relay = new UDPRelay(socket, target, this.relayOpts);
        resolve({
          key, protocol: 'UDP', port: socket.address().port,
          close: () => {
            relay.close();
            return Promise.resolve();
          },
        });
      });
    });
  }

  private portals(): Portal[] {
    const out: Portal[] = [];
    for (const f of this.redirected.values()) {
      const l = this.proxyPorts.get(`${balancerKey(f.spn, f.role)}|${f.protocol}`);
      if (l) out.push({ servicePort: f.spn, ip: f.ip, port: f.port, protocol: f.protocol, proxyPort: l.port });
    }
    return out;
  }

  /** The restore text for the current portals: what `--dry-run` would print. */
  portalRules(): string {
    return renderPortals(this.portals());
  }

  private async syncPortals(): Promise<void> {
    const portals = this.portals();
    if (portals.length === 0 && this.installedPortals === undefined) return; // never needed rules: touch nothing
    const text = renderPortals(portals);
    if (text === this.installedPortals && this.jumpsInstalled) return;
    try {
      await this.iptables.restore(text);
      this.installedPortals = text;
      if (!this.jumpsInstalled) {
        for (const [chain, target, comment] of USERSPACE_JUMPS) await this.iptables.ensureJump('nat', chain, target, comment);
        this.jumpsInstalled = true;
      }
    } catch (err) {
      throw new Error(`cannot install userspace portal rules for ${portals.length} service address(es) (this needs root): ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Idempotent: stops accepting, drains open connections within the bound, removes the rules. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const listeners = [...[...this.direct.values()].map((d) => d.listener), ...this.proxyPorts.values()];
    this.direct.clear();
    this.proxyPorts.clear();
    this.redirected.clear();
    await Promise.all(listeners.map((l) => l.close(this.opts.drainTimeoutMs)));
    if (this.installedPortals !== undefined) await removeUserspaceRules(this.iptables);
  }
}

/** Removes the userspace portal chains and their jumps (used on exit and by --cleanup). */
export async function removeUserspaceRules(iptables: Iptables): Promise<string[]> {
  for (const [chain, target, comment] of USERSPACE_JUMPS) await iptables.deleteJump('nat', chain, target, comment);
  return iptables.deleteChains('nat', USERSPACE_CHAINS);
}

function describeListenError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'EADDRINUSE':
      return 'address already in use (another process holds this port)';
    case 'EACCES':
      return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    case 'EADDRNOTAVAIL':
      return 'address not available on this host';
    default:
      return errorMessage(err);
  }
}
