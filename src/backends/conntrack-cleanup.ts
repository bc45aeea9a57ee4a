/**
 * UDP conntrack cleanup shared by the kernel modes (upstream's conntrack cleanup): UDP has no
 * connection end, so the kernel keeps NATing a client's flow to an endpoint that is gone, or
 * keeps the un-NATed state it cached before a service had endpoints.
 */
import { errorMessage } from '../core/errors.js';
import type { ServicePortName } from '../core/ids.js';
import type { Snapshot } from '../core/snapshot.js';
import { categorizeEndpoints } from '../core/traffic-policy.js';
import type { Logger } from '../observability/log.js';
import type { ProxyMetrics } from '../observability/metrics.js';
import type { Conntrack } from '../platform/conntrack.js';

export class UdpConntrackCleaner {
  /** Whether each UDP service port had a usable endpoint at the last sync. */
  private readonly udpHadEndpoints = new Map<ServicePortName, boolean>();

  constructor(private readonly conntrack: Conntrack, private readonly log: Logger, private readonly metrics: ProxyMetrics) {}

  /**
   * Upstream's stale-UDP cleanup: flows DNATed to endpoints that are gone, and flows of a UDP
   * service that had no usable endpoint until now (the kernel cached their REJECT/no-NAT state;
   * without this a DNS client keeps failing after the first pod comes up).
   */
  async clean(snap: Snapshot, firstSync: boolean): Promise<void> {
    let deleted = 0;
    const ports = snap.full ? [...snap.servicePorts.keys()] : [...snap.changed];
    for (const spn of ports) {
      const sp = snap.servicePorts.get(spn);
      if (!sp || sp.protocol !== 'UDP') {
        this.udpHadEndpoints.delete(spn);
        continue;
      }
      const has = categorizeEndpoints(sp, snap.endpoints.get(spn) ?? []).hasAnyEndpoints;
      const had = this.udpHadEndpoints.get(spn);
      this.udpHadEndpoints.set(spn, has);
      // The process's first sync only learns the state: clearing then would cut live flows of
      // every UDP service whenever kproxy restarts.
      if (!has || had === true || firstSync) continue;
      try {
        for (const ip of [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs].filter((x) => x !== '' && x !== 'None')) {
          deleted += await this.conntrack.clearServiceIP(sp.protocol, ip);
        }
        if (sp.nodePort > 0) deleted += await this.conntrack.clearNodePort(sp.protocol, sp.nodePort);
      } catch (err) {
        this.log.error('failed to clear conntrack entries of a UDP service that got endpoints', { servicePort: spn, err: errorMessage(err) });
      }
    }
    for (const [spn, gone] of snap.removedEndpoints) {
      const sp = snap.servicePorts.get(spn) ?? snap.removed.get(spn);
      if (!sp || sp.protocol !== 'UDP') continue;
      const ips = [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs].filter((ip) => ip !== '' && ip !== 'None');
      for (const ep of gone) {
        try {
          for (const ip of ips) deleted += await this.conntrack.clearServiceEndpoint(sp.protocol, ip, ep.ip);
          if (sp.nodePort > 0) deleted += await this.conntrack.clearNodePortEndpoint(sp.protocol, sp.nodePort, ep.ip);
        } catch (err) {
          this.log.error('failed to clear conntrack entries of a removed UDP endpoint', { servicePort: spn, endpoint: ep.key, err: errorMessage(err) });
        }
      }
    }
    if (deleted > 0) this.metrics.conntrackCleanups.inc(deleted);
  }

}
