/**
 * Pieces shared by the guest tests (test/**\/*.guest.ts, run inside the IPVS VM by
 * test/vm/ipvs-vm.test.ts): the check that we are in the guest, and a small IPVS topology of
 * namespaces: a client, a director ("lb") holding the virtual addresses on a dummy
 * kube-ipvs0, and real servers, each on its own veth link to the director.
 *
 *   client 198.18.1.10-.19 ── 198.18.1.1 [lb: kube-ipvs0 198.18.100.0/28] 198.18.(2+i).254 ── server i 198.18.(2+i).1
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createNetns, linkNetns, type Netns, type NetnsProcess } from '../../src/platform/netns.js';
import { POD_JS } from './netns-util.js';

/** Fails (never skips) unless this runs inside the VM with IPVS loaded. */
export function assertInGuest(): void {
  assert.equal(process.env['KPROXY_IN_VM'], '1', 'guest tests run inside the IPVS VM (test/vm/ipvs-vm.test.ts), not on the host');
  assert.ok(existsSync('/proc/net/ip_vs'), 'the guest kernel has no IPVS loaded (/proc/net/ip_vs is missing)');
}

export const CLIENT_GW = '198.18.1.1';
/** Client source addresses: CLIENT_IPS[0] is the primary, all are on the client's link. */
export const CLIENT_IPS: readonly string[] = Array.from({ length: 10 }, (_, i) => `198.18.1.${10 + i}`);
/** Virtual addresses on the director's kube-ipvs0. */
export const VIPS: readonly string[] = Array.from({ length: 8 }, (_, i) => `198.18.100.${1 + i}`);
export const SERVER_PORT = 8080;

export interface IpvsTopology {
  readonly client: Netns;
  readonly lb: Netns;
  readonly servers: readonly { readonly name: string; readonly ns: Netns; readonly ip: string; readonly pod: NetnsProcess }[];
  /** ipvsadm (or any command) in the director's namespace, failing on a non-zero exit. */
  lbExec(cmd: string, args: readonly string[]): Promise<string>;
  destroy(): Promise<void>;
}

/**
 * Builds the topology with `serverNames.length` real servers, each running netns-pod (with
 * --hold when `hold`) on SERVER_PORT and greeting with its name. No IPVS service yet.
 */
export async function ipvsTopology(prefix: string, serverNames: readonly string[], options: { hold?: boolean } = {}): Promise<IpvsTopology> {
  const made: Netns[] = [];
  const destroy = async (): Promise<void> => { for (const ns of made.reverse()) await ns.destroy(); };
  try {
    const lb = await createNetns(`${prefix}-lb`);
    made.push(lb);
    const client = await createNetns(`${prefix}-cl`);
    made.push(client);
    const cl = await linkNetns(lb, client, { aCidr: `${CLIENT_GW}/24`, bCidr: `${CLIENT_IPS[0]}/24`, aIfname: 'to-client', bIfname: 'eth0' });
    for (const ip of CLIENT_IPS.slice(1)) await client.execOk('ip', ['addr', 'add', `${ip}/24`, 'dev', cl.b.ifname]);
    await client.addRoute('198.18.0.0/15', { via: CLIENT_GW });
    await lb.sysctl('net.ipv4.ip_forward', '1');
    await lb.execOk('ip', ['link', 'add', 'kube-ipvs0', 'type', 'dummy']);
    for (const vip of VIPS) await lb.execOk('ip', ['addr', 'add', `${vip}/32`, 'dev', 'kube-ipvs0']);
    const servers: { name: string; ns: Netns; ip: string; pod: NetnsProcess }[] = [];
    for (const [i, name] of serverNames.entries()) {
      const ns = await createNetns(`${prefix}-s${i}`);
      made.push(ns);
      const link = await linkNetns(lb, ns, { aCidr: `198.18.${2 + i}.254/24`, bCidr: `198.18.${2 + i}.1/24`, aIfname: `to-s${i}`, bIfname: 'eth0' });
      await ns.addRoute('198.18.0.0/15', { via: link.a.ip });
      const pod = ns.spawn(process.execPath, [POD_JS, '--name', name, '--tcp', `${link.b.ip}:${SERVER_PORT}`, ...(options.hold ? ['--hold'] : []), '--max-ms', '600000']);
      servers.push({ name, ns, ip: link.b.ip, pod });
    }
    for (const s of servers) await s.pod.waitForOutput('ready', 60_000);
    return {
      client,
      lb,
      servers,
      lbExec: async (cmd, args) => (await lb.execOk(cmd, args, { timeoutMs: 30_000 })).stdout,
      destroy,
    };
  } catch (err) {
    await destroy();
    throw err;
  }
}
