/**
 * Conntrack cleanup for UDP services (upstream's conntrack.CleanStaleEntries): UDP has no
 * connection end, so entries that still point at a removed endpoint (or that cached a REJECT
 * before the service had endpoints) would keep blackholing a client. Uses the `conntrack` tool.
 */
import { KproxyError } from '../core/errors.js';
import type { Exec } from './exec.js';

export class Conntrack {
  constructor(private readonly exec: Exec) {}

  /** `conntrack -D` exits 1 when nothing matched; that is success for cleanup. */
  private async delete(args: string[]): Promise<number> {
    const r = await this.exec('conntrack', ['-D', ...args]);
    const m = /(\d+) flow entries have been deleted/.exec(r.stderr + r.stdout);
    if (r.code === 0 || (r.code === 1 && m)) return m ? Number(m[1]) : 0;
    throw new KproxyError('KP_ERR_CONNTRACK', `conntrack -D ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  /** Entries of flows sent to serviceIP that were DNATed to endpointIP. */
  clearServiceEndpoint(protocol: string, serviceIP: string, endpointIP: string): Promise<number> {
    return this.delete(['-p', protocol.toLowerCase(), '--orig-dst', serviceIP, '--dst-nat', endpointIP]);
  }

  /** Entries of flows sent to a node port that were DNATed to endpointIP. */
  clearNodePortEndpoint(protocol: string, nodePort: number, endpointIP: string): Promise<number> {
    return this.delete(['-p', protocol.toLowerCase(), '--orig-port-dst', String(nodePort), '--dst-nat', endpointIP]);
  }

  /** Every entry of flows sent to serviceIP (e.g. cached before the service had endpoints). */
  clearServiceIP(protocol: string, serviceIP: string): Promise<number> {
    return this.delete(['-p', protocol.toLowerCase(), '--orig-dst', serviceIP]);
  }

  clearNodePort(protocol: string, nodePort: number): Promise<number> {
    return this.delete(['-p', protocol.toLowerCase(), '--orig-port-dst', String(nodePort)]);
  }
}
