/**
 * Whether this machine can run IPVS mode: the kernel's IPVS (/proc/net/ip_vs, or `modprobe ip_vs`
 * makes it appear), `ipvsadm`, and `ipset` 6.0 or newer (upstream's
 * minimum). Without them kproxy runs iptables mode instead, as upstream does. Injectable: tests
 * pass their own exec and file check.
 */
import { existsSync } from 'node:fs';
import type { Exec } from '../../platform/exec.js';

export interface IpvsSupportDeps {
  readonly exec: Exec;
  readonly exists?: (path: string) => boolean;
}

export type IpvsSupport = { readonly ok: true } | { readonly ok: false; readonly missing: readonly string[] };

export const PROC_IP_VS = '/proc/net/ip_vs';
export const MIN_IPSET_VERSION = [6, 0] as const;

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

export async function probeIpvsSupport(deps: IpvsSupportDeps): Promise<IpvsSupport> {
  const exists = deps.exists ?? existsSync;
  const missing: string[] = [];
  if (!exists(PROC_IP_VS)) {
    const r = await deps.exec('modprobe', ['ip_vs']);
    if (r.code !== 0 || !exists(PROC_IP_VS)) {
      const why = r.code === 127 ? 'modprobe not found' : r.code !== 0 ? `modprobe ip_vs failed: ${firstLine(r.stderr) || `exit ${r.code}`}` : 'modprobe ip_vs loaded nothing';
      missing.push(`the kernel's IPVS (no ${PROC_IP_VS}; ${why})`);
    }
  }
  const r = await deps.exec('ipvsadm', ['--help']);
  if (r.code === 127) missing.push('the ipvsadm command');
  const v = await deps.exec('ipset', ['--version']);
  if (v.code === 127) missing.push('the ipset command');
  else {
    const m = /v(\d+)\.(\d+)/.exec(v.stdout + v.stderr);
    const [maj, min] = [Number(m?.[1] ?? 0), Number(m?.[2] ?? 0)];
    if (!m) missing.push(`a readable ipset version (ipset --version said ${JSON.stringify(firstLine(v.stdout + v.stderr))})`);
    else if (maj < MIN_IPSET_VERSION[0] || (maj === MIN_IPSET_VERSION[0] && min < MIN_IPSET_VERSION[1])) missing.push(`ipset ${MIN_IPSET_VERSION.join('.')} or newer (found v${maj}.${min})`);
  }
  return missing.length === 0 ? { ok: true } : { ok: false, missing };
}
