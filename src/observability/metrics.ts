/**
 * Every metric kproxy exports, in one place, with upstream kube-proxy's names
 * (pkg/proxy/metrics). kproxy's own additions use the `kproxy_` prefix.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Upstream's buckets for sync durations: exponential from 1 ms, factor 2, 15 buckets. */
const SYNC_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly syncDuration = new Histogram({
    name: 'kubeproxy_sync_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds',
    buckets: SYNC_BUCKETS,
    registers: [this.registry],
  });
  readonly syncFullDuration = new Histogram({
    name: 'kubeproxy_sync_full_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for full resyncs',
    buckets: SYNC_BUCKETS,
    registers: [this.registry],
  });
  readonly syncPartialDuration = new Histogram({
    name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for partial resyncs',
    buckets: SYNC_BUCKETS,
    registers: [this.registry],
  });
  readonly networkProgrammingDuration = new Histogram({
    name: 'kubeproxy_network_programming_duration_seconds',
    help: 'In Cluster Network Programming Latency in seconds',
    // Upstream's buckets: 0.25 s steps to 1 s, 1 s steps to 59 s, 5 s steps to 115 s, 30 s steps to 300 s.
    buckets: [0.25, 0.5, ...Array.from({ length: 59 }, (_, i) => i + 1), ...Array.from({ length: 12 }, (_, i) => 60 + 5 * i), ...Array.from({ length: 7 }, (_, i) => 120 + 30 * i)],
    registers: [this.registry],
  });
  readonly lastSync = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
    help: 'The last time proxy rules were successfully synced',
    registers: [this.registry],
  });
  readonly lastQueued = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
    help: 'The last time a sync of proxy rules was queued',
    registers: [this.registry],
  });
  readonly serviceChangesTotal = new Counter({
    name: 'kubeproxy_sync_proxy_rules_service_changes_total',
    help: 'Cumulative proxy rules Service changes',
    registers: [this.registry],
  });
  readonly serviceChangesPending = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_service_changes_pending',
    help: 'Pending proxy rules Service changes',
    registers: [this.registry],
  });
  readonly endpointChangesTotal = new Counter({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
    help: 'Cumulative proxy rules Endpoint changes',
    registers: [this.registry],
  });
  readonly endpointChangesPending = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
    help: 'Pending proxy rules Endpoint changes',
    registers: [this.registry],
  });
  readonly syncFailures = new Counter({
    name: 'kproxy_sync_proxy_rules_failures_total',
    help: 'Syncs whose backend apply failed (each is retried with a full sync)',
    labelNames: ['mode'],
    registers: [this.registry],
  });
  readonly iptablesRestoreFailures = new Counter({
    name: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
    help: 'Cumulative proxy iptables restore failures',
    registers: [this.registry],
  });
  readonly iptablesPartialRestoreFailures = new Counter({
    name: 'kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total',
    help: 'Cumulative proxy iptables partial restore failures',
    registers: [this.registry],
  });
  readonly iptablesTotal = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_iptables_total',
    help: 'Total number of iptables rules owned by kube-proxy',
    labelNames: ['table'],
    registers: [this.registry],
  });
  readonly iptablesLast = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_iptables_last',
    help: 'Number of iptables rules written by kube-proxy in last sync',
    labelNames: ['table'],
    registers: [this.registry],
  });
  readonly nftablesSyncFailures = new Counter({
    name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
    help: 'Cumulative proxy nftables sync failures',
    registers: [this.registry],
  });
  readonly sourceProblems = new Counter({
    name: 'kproxy_source_problems_total',
    help: 'Objects or files a source reported as invalid (each skipped and logged with where and why), by problem code',
    labelNames: ['source', 'code'],
    registers: [this.registry],
  });
  readonly skippedServicePorts = new Gauge({
    name: 'kproxy_sync_proxy_rules_skipped_service_ports',
    help: 'Service ports not programmed because they are invalid for this backend (each is logged with its reason)',
    labelNames: ['mode'],
    registers: [this.registry],
  });
  readonly ipvsRestoreFailures = new Counter({
    name: 'kproxy_sync_proxy_rules_ipvs_restore_failures_total',
    help: 'IPVS mode: failed ipvsadm-restore, ipset restore or ip runs (the sync is retried as a full sync), by tool',
    labelNames: ['tool'],
    registers: [this.registry],
  });
  readonly ipvsTerminatingRealServers = new Gauge({
    name: 'kproxy_ipvs_terminating_real_servers',
    help: 'IPVS mode: removed TCP real servers held at weight 0 until their connections end',
    registers: [this.registry],
  });
  readonly conntrackCleanups = new Counter({
    name: 'kproxy_conntrack_entries_deleted_total',
    help: 'Conntrack entries of UDP flows to removed endpoints that kproxy deleted',
    registers: [this.registry],
  });
  readonly userspaceActiveConnections = new Gauge({
    name: 'kproxy_userspace_endpoint_active_connections',
    help: 'Connections (TCP) or flows (UDP) the userspace proxy is relaying, per service port and endpoint',
    labelNames: ['service_port', 'protocol', 'endpoint'],
    registers: [this.registry],
  });
  readonly userspaceConnectionsTotal = new Counter({
    name: 'kproxy_userspace_connections_total',
    help: 'Connections (TCP) or flows (UDP) the userspace proxy accepted, by outcome',
    labelNames: ['service_port', 'protocol', 'result'],
    registers: [this.registry],
  });
  readonly userspaceEndpointFailures = new Counter({
    name: 'kproxy_userspace_endpoint_failures_total',
    help: 'Connection attempts to an endpoint that failed (refused or timed out) and were retried elsewhere',
    labelNames: ['service_port', 'endpoint'],
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
