/**
 * Reading and writing sysctls through the `sysctl` tool (procps), so that the same code runs
 * in the node's namespace (realExec) and, in tests, inside a network namespace (its exec).
 */
import { KproxyError } from '../core/errors.js';
import type { Exec } from './exec.js';

export interface Sysctl {
  /** The integer value of a key such as net.netfilter.nf_conntrack_max. */
  get(key: string): Promise<number>;
  set(key: string, value: number): Promise<void>;
}

export function execSysctl(exec: Exec): Sysctl {
  const sysctl: Sysctl = {
    async get(key) {
      const r = await exec('sysctl', ['-n', key]);
      const n = Number(r.stdout.trim());
      if (r.code !== 0 || r.stdout.trim() === '' || !Number.isInteger(n)) {
        throw new KproxyError('KP_ERR_SYSCTL', `cannot read sysctl ${key}: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`);
      }
      return n;
    },
    async set(key, value) {
      // procps' sysctl -w reports some refusals (EINVAL) on stderr yet exits 0: check both, and
      // read the value back.
      const r = await exec('sysctl', ['-w', `${key}=${value}`]);
      if (r.code !== 0 || r.stderr.trim() !== '') {
        throw new KproxyError('KP_ERR_SYSCTL', `cannot set sysctl ${key}=${value}: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`);
      }
      const now = await sysctl.get(key);
      if (now !== value) throw new KproxyError('KP_ERR_SYSCTL', `cannot set sysctl ${key}=${value}: it reads ${now} after writing`);
    },
  };
  return sysctl;
}
