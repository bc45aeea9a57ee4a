/**
 * A small Kubernetes-shaped network for kernel tests, built from network namespaces only
 * (198.18.0.0/15 addresses, nothing in the root namespace):
 *
 *   client 198.18.200.2 ─┐
 *   node1  198.18.200.1 ─┼─ lan (a bridge in its own namespace)
 *   node2  198.18.200.3 ─┘
 *   node1: br0 198.18.10.1/24 ── pod-a 198.18.10.2, pod-b 198.18.10.3   (hairpin on)
 *   node2: br0 198.18.20.1/24 ── pod-c 198.18.20.2
 *
 * Cluster CIDR 198.18.0.0/19 (pods); services 198.18.100.0/24; load balancer IPs 198.18.101.0/24.
 * Every pod runs the netns-pod helper: TCP 8080 greets with "<pod> <client ip>:<port>", UDP 5353
 * answers "<pod>: <datagram>".
 */
import { createNetns, runHost, type Netns } from '../../src/platform/netns.js';
import { POD_JS } from './netns-util.js';

export const CLUSTER_CIDR = '198.18.0.0/19';
export const CLIENT_IP = '198.18.200.2';
export const NODE_IPS = { node1: '198.18.200.1', node2: '198.18.200.3' } as const;
export const POD_IPS = { 'pod-a': '198.18.10.2', 'pod-b': '198.18.10.3', 'pod-c': '198.18.20.2' } as const;
export type PodName = keyof typeof POD_IPS;
export const POD_NODE: Record<PodName, 'node1' | 'node2'> = { 'pod-a': 'node1', 'pod-b': 'node1', 'pod-c': 'node2' };

export interface Cluster {
  readonly lan: Netns;
  readonly client: Netns;
  readonly node1: Netns;
  readonly node2: Netns;
  readonly pods: Record<PodName, Netns>;
  /** Every namespace, for cleanup. */
  readonly all: readonly Netns[];
  destroy(): Promise<void>;
}

async function ip(args: string[]): Promise<void> {
  const r = await runHost('ip', args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** A veth from `from` (ifname a) to `to` (ifname b); nothing is created outside namespaces. */
async function veth(from: Netns, a: string, to: Netns, b: string): Promise<void> {
  await ip(['-n', from.name, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', to.name]);
}

export async function buildCluster(prefix: string): Promise<Cluster> {
  const made: Netns[] = [];
  const mk = async (): Promise<Netns> => {
    const ns = await createNetns(prefix);
    made.push(ns);
    return ns;
  };
  try {
    const lan = await mk();
    const client = await mk();
    const node1 = await mk();
    const node2 = await mk();
    const pods = { 'pod-a': await mk(), 'pod-b': await mk(), 'pod-c': await mk() };
    await ip(['-n', lan.name, 'link', 'add', 'lan0', 'type', 'bridge']);
    await ip(['-n', lan.name, 'link', 'set', 'lan0', 'up']);
    for (const [ns, addr, port] of [[client, CLIENT_IP, 'p-client'], [node1, NODE_IPS.node1, 'p-node1'], [node2, NODE_IPS.node2, 'p-node2']] as const) {
      await veth(lan, port, ns, 'eth0');
      await ip(['-n', lan.name, 'link', 'set', port, 'master', 'lan0', 'up']);
      await ip(['-n', ns.name, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      await ip(['-n', ns.name, 'link', 'set', 'eth0', 'up']);
    }
    for (const [node, subnet, gw] of [[node1, '198.18.10', '198.18.10.1'], [node2, '198.18.20', '198.18.20.1']] as const) {
      await ip(['-n', node.name, 'link', 'add', 'br0', 'type', 'bridge']);
      await ip(['-n', node.name, 'addr', 'add', `${gw}/24`, 'dev', 'br0']);
      await ip(['-n', node.name, 'link', 'set', 'br0', 'up']);
      await node.sysctl('net.ipv4.ip_forward', '1');
      for (const [name, addr] of Object.entries(POD_IPS)) {
        if (!addr.startsWith(`${subnet}.`)) continue;
        const pod = pods[name as PodName];
        const port = `v-${name}`;
        await veth(node, port, pod, 'eth0');
        await ip(['-n', node.name, 'link', 'set', port, 'master', 'br0', 'up']);
        await ip(['-n', node.name, 'link', 'set', 'dev', port, 'type', 'bridge_slave', 'hairpin', 'on']);
        await ip(['-n', pod.name, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
        await ip(['-n', pod.name, 'link', 'set', 'eth0', 'up']);
        await pod.addRoute('198.18.0.0/15', { via: gw });
      }
    }
    await node1.addRoute('198.18.20.0/24', { via: NODE_IPS.node2 });
    await node2.addRoute('198.18.10.0/24', { via: NODE_IPS.node1 });
    // Service and LB ranges: routed towards the client so that locally originated packets have a
    // route before nat OUTPUT rewrites them (the kernel's routing happens first).
    for (const node of [node1, node2]) {
      await node.addRoute('198.18.100.0/24', { via: CLIENT_IP });
      await node.addRoute('198.18.101.0/24', { via: CLIENT_IP });
    }
    await client.addRoute('198.18.10.0/24', { via: NODE_IPS.node1 });
    await client.addRoute('198.18.20.0/24', { via: NODE_IPS.node2 });
    await client.addRoute('198.18.100.0/24', { via: NODE_IPS.node1 });
    await client.addRoute('198.18.101.0/24', { via: NODE_IPS.node1 });
    for (const [name, addr] of Object.entries(POD_IPS)) {
      const p = pods[name as PodName].spawn(process.execPath, [POD_JS, '--name', name, '--tcp', `${addr}:8080`, '--tcp-hold', `${addr}:8081`, '--udp', `${addr}:5353`, '--max-ms', '600000']);
      await p.waitForOutput('ready', 10_000);
    }
    let destroyed: Promise<void> | undefined;
    return {
      lan, client, node1, node2, pods, all: made,
      destroy: () => (destroyed ??= (async () => { for (const ns of [...made].reverse()) await ns.destroy(); })()),
    };
  } catch (err) {
    for (const ns of made.reverse()) await ns.destroy();
    throw err;
  }
}

export const WEB = '198.18.100.10';
export const DNS = '198.18.100.11';
export const STICKY = '198.18.100.12';
export const EMPTY = '198.18.100.13';
export const LB_IP = '198.18.101.1';
/** A ClusterIP whose endpoints hold connections open and echo (pods' port 8081). */
export const HELD = '198.18.100.16';

function endpoints(pods: readonly PodName[]): string {
  return pods.map((p) => `- addresses: ["${POD_IPS[p]}"]\n  nodeName: ${p === 'pod-c' ? 'node2' : 'node1'}`).join('\n');
}

function service(name: string, spec: string, pods: readonly PodName[], port: { name: string; protocol: string; port: number }): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: kt}
spec:
${spec}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}-1
  namespace: kt
  labels: {kubernetes.io/service-name: ${name}}
addressType: IPv4
ports: [{name: ${port.name}, protocol: ${port.protocol}, port: ${port.port}}]
${pods.length > 0 ? `endpoints:\n${endpoints(pods)}` : 'endpoints: []'}
`;
}

/** The scenario table's Services: web (NodePort), local (ETP Local), lb (source ranges), sticky, empty, dns (UDP), held (long-lived TCP). */
export function scenarioManifest(webPods: readonly PodName[], dnsPods: readonly PodName[], heldPods: readonly PodName[] = ['pod-a', 'pod-b']): string {
  const http = { name: 'http', protocol: 'TCP', port: 8080 };
  return [
    service('web', `  type: NodePort\n  clusterIP: ${WEB}\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]`, webPods, http),
    service('local', `  type: NodePort\n  clusterIP: 198.18.100.14\n  externalTrafficPolicy: Local\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]`, ['pod-a', 'pod-c'], http),
    service('lb', `  type: LoadBalancer\n  clusterIP: 198.18.100.15\n  loadBalancerSourceRanges: ["${CLIENT_IP}/32"]\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30082}]`, ['pod-a', 'pod-b'], http)
      .replace('---\napiVersion: discovery', `status:\n  loadBalancer:\n    ingress: [{ip: ${LB_IP}}]\n---\napiVersion: discovery`),
    service('sticky', `  clusterIP: ${STICKY}\n  sessionAffinity: ClientIP\n  ports: [{name: http, port: 80, targetPort: 8080}]`, ['pod-a', 'pod-b', 'pod-c'], http),
    service('empty', `  clusterIP: ${EMPTY}\n  ports: [{name: http, port: 80, targetPort: 8080}]`, [], http),
    service('dns', `  clusterIP: ${DNS}\n  ports: [{name: dns, protocol: UDP, port: 53, targetPort: 5353}]`, dnsPods, { name: 'dns', protocol: 'UDP', port: 5353 }),
    service('held', `  clusterIP: ${HELD}\n  ports: [{name: echo, port: 80, targetPort: 8081}]`, heldPods, { name: 'echo', protocol: 'TCP', port: 8081 }),
  ].join('---\n');
}

