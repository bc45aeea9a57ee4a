/**
 * A fake of the kernel state IPVS mode drives, behind the real tools' command lines and output
 * formats: `ipvsadm -Sn` / `-Ln` / `-C` / `--set`, `ipvsadm-restore` (not atomic, stops at the
 * first failing line like ipvsadm's restore), `ipset save` / `-exist restore` / `list -n` /
 * `destroy`, `ip` for kube-ipvs0, and the iptables tools (accepted and recorded). The formats are
 * written out here by hand from captured tool output, not with kproxy's serializers.
 * `inputs('ipvsadm -R')` gives the restore inputs.
 */
import type { Exec, ExecCall, ExecResult } from '../../src/platform/exec.js';
import { textOf } from '../../src/core/text.js';

interface RS { ip: string; port: number; weight: number; active: number; inactive: number }
interface VS { proto: 'TCP' | 'UDP' | 'SCTP'; addr: string; sched: string; persist: number; flags: string; rs: RS[] }

const FLAG: Record<string, 'TCP' | 'UDP' | 'SCTP'> = { '-t': 'TCP', '-u': 'UDP', '--sctp-service': 'SCTP' };
const SHORT: Record<string, string> = { TCP: '-t', UDP: '-u', SCTP: '--sctp-service' };

export class FakeIpvsKernel {
  readonly calls: ExecCall[] = [];
  readonly vs = new Map<string, VS>();
  readonly sets = new Map<string, { type: string; header: string; entries: Set<string> }>();
  device: string[] | undefined = undefined;
  /** Schedulers whose kernel module "cannot be loaded". */
  readonly refuseSchedulers = new Set<string>();
  /** Tools that fail outright (exit 1). */
  readonly failing = new Set<string>();
  timeouts: string[] = [];

  private ok(stdout = ''): ExecResult {
    return { code: 0, stdout, stderr: '' };
  }

  private fail(stderr: string, code = 1): ExecResult {
    return { code, stdout: '', stderr };
  }

  setConnections(vsKey: string, rsAddr: string, active: number, inactive: number): void {
    const r = this.vs.get(vsKey)?.rs.find((x) => `${x.ip}:${x.port}` === rsAddr);
    if (!r) throw new Error(`no real server ${vsKey} ${rsAddr}`);
    r.active = active;
    r.inactive = inactive;
  }

  /** "TCP 198.18.0.10:80" → real servers "ip:port w" */
  dump(): string[] {
    const out: string[] = [];
    for (const [k, v] of [...this.vs].sort()) {
      out.push(`${k} ${v.sched}${v.persist ? ` p${v.persist}` : ''}`);
      for (const r of [...v.rs].sort((a, b) => (a.ip < b.ip ? -1 : 1))) out.push(`  ${r.ip}:${r.port} w${r.weight}`);
    }
    return out;
  }

  private restoreLine(line: string): string | undefined {
    const t = line.trim().split(/\s+/);
    const verb = t[0] ?? '';
    const proto = FLAG[t[1] ?? ''];
    const addr = t[2] ?? '';
    if (!proto) return `unknown service ${line}`;
    const key = `${proto} ${addr}`;
    const opt = (f: string): string | undefined => {
      const i = t.indexOf(f);
      return i >= 0 ? t[i + 1] : undefined;
    };
    const cur = this.vs.get(key);
    switch (verb) {
      case '-A':
      case '-E': {
        const sched = opt('-s') ?? 'wlc';
        if (this.refuseSchedulers.has(sched)) return `Memory allocation problem`;
        if (verb === '-A' && cur) return 'Service already exists';
        if (verb === '-E' && !cur) return 'No such service';
        this.vs.set(key, { proto, addr, sched, persist: Number(opt('-p') ?? 0), flags: opt('-b') ?? '', rs: cur?.rs ?? [] });
        return undefined;
      }
      case '-D':
        if (!cur) return 'No such service';
        this.vs.delete(key);
        return undefined;
      case '-a':
      case '-e':
      case '-d': {
        if (!cur) return 'Service not defined';
        const [ip, port] = (opt('-r') ?? '').split(':');
        const i = cur.rs.findIndex((r) => r.ip === ip && r.port === Number(port));
        const w = Number(opt('-w') ?? 1);
        if (w < 0 || w > 65535) return 'Illegal weight specified';
        if (verb === '-a') {
          if (i >= 0) return 'Destination already exists';
          cur.rs.push({ ip: ip ?? '', port: Number(port), weight: w, active: 0, inactive: 0 });
        } else if (i < 0) return 'No such destination';
        else if (verb === '-e') {
          const r = cur.rs[i];
          if (r) r.weight = w;
        } else cur.rs.splice(i, 1);
        return undefined;
      }
      default:
        return `unknown command ${line}`;
    }
  }

  private ipvsadm(args: readonly string[]): ExecResult {
    if (this.failing.has('ipvsadm')) return this.fail('Can\'t initialize ipvs: Protocol not available', 2);
    const a = args.join(' ');
    if (a === '-Sn') {
      const out: string[] = [];
      for (const v of this.vs.values()) {
        out.push(`-A ${SHORT[v.proto]} ${v.addr} -s ${v.sched}${v.flags ? ` -b ${v.flags}` : ''}${v.persist ? ` -p ${v.persist}` : ''}`);
        for (const r of v.rs) out.push(`-a ${SHORT[v.proto]} ${v.addr} -r ${r.ip}:${r.port} -m -w ${r.weight}`);
      }
      return this.ok(out.map((l) => l + '\n').join(''));
    }
    if (a === '-Ln') {
      const out = ['IP Virtual Server version 1.2.1 (size=4096)', 'Prot LocalAddress:Port Scheduler Flags', '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn'];
      for (const v of this.vs.values()) {
        out.push(`${v.proto.padEnd(4)} ${v.addr} ${v.sched}${v.persist ? ` persistent ${v.persist}` : ''}`);
        for (const r of v.rs) out.push(`  -> ${`${r.ip}:${r.port}`.padEnd(28)} Masq    ${String(r.weight).padEnd(6)} ${String(r.active).padEnd(10)} ${r.inactive}`);
      }
      return this.ok(out.join('\n') + '\n');
    }
    if (a === '-C') {
      this.vs.clear();
      return this.ok();
    }
    if (args[0] === '--set') {
      this.timeouts = args.slice(1);
      return this.ok();
    }
    return this.fail(`fake ipvsadm: unsupported ${a}`);
  }

  private ipset(args: readonly string[], input: string | undefined): ExecResult {
    const a = args.join(' ');
    if (this.failing.has('ipset') && a !== 'save') return this.fail('ipset v7.17: Kernel error received: ipset protocol error');
    if (a === 'save') {
      const out: string[] = [];
      for (const [n, s] of this.sets) {
        out.push(`create ${n} ${s.type} ${s.header}${s.type.startsWith('hash') ? ' bucketsize 12 initval 0x1a2b3c4d' : ''}`);
        for (const e of s.entries) out.push(`add ${n} ${e}`);
      }
      return this.ok(out.map((l) => l + '\n').join(''));
    }
    if (a === '-exist restore') {
      for (const [i, line] of (input ?? '').split('\n').entries()) {
        const t = line.trim().split(/\s+/);
        if (t[0] === '') continue;
        const name = t[1] ?? '';
        if (t[0] === 'create') {
          if (!this.sets.has(name)) this.sets.set(name, { type: t[2] ?? '', header: t.slice(3).join(' '), entries: new Set() });
        } else if (t[0] === 'add' || t[0] === 'del') {
          const s = this.sets.get(name);
          if (!s) return this.fail(`ipset v7.17: Error in line ${i + 1}: The set with the given name does not exist`);
          if (t[0] === 'add') s.entries.add(t[2] ?? '');
          else s.entries.delete(t[2] ?? '');
        } else return this.fail(`ipset v7.17: Error in line ${i + 1}: unknown command`);
      }
      return this.ok();
    }
    if (a === 'list -n') return this.ok([...this.sets.keys()].map((n) => n + '\n').join(''));
    if (args[0] === 'destroy') {
      this.sets.delete(args[1] ?? '');
      return this.ok();
    }
    return this.fail(`fake ipset: unsupported ${a}`);
  }

  private ip(args: readonly string[], input: string | undefined): ExecResult {
    const a = args.join(' ');
    if (a === '-o addr show dev kube-ipvs0') {
      if (!this.device) return this.fail('Device "kube-ipvs0" does not exist.');
      return this.ok(this.device.map((x, i) => `${5 + i}: kube-ipvs0    inet ${x}/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n`).join(''));
    }
    if (a === 'link add kube-ipvs0 type dummy') {
      this.device = [];
      return this.ok();
    }
    if (a === 'link show kube-ipvs0') return this.device ? this.ok('5: kube-ipvs0: <BROADCAST,NOARP> mtu 1500\n') : this.fail('Device "kube-ipvs0" does not exist.');
    if (a === 'link del kube-ipvs0') {
      this.device = undefined;
      return this.ok();
    }
    if (a === '-force -batch -') {
      for (const line of (input ?? '').split('\n')) {
        const m = /^addr (add|del) (\S+)\/\d+ dev kube-ipvs0$/.exec(line);
        if (!m || !this.device) continue;
        if (m[1] === 'add') this.device.push(m[2] ?? '');
        else this.device = this.device.filter((x) => x !== m[2]);
      }
      return this.ok();
    }
    return this.fail(`fake ip: unsupported ${a}`);
  }

  readonly exec: Exec = (cmd, args, options) => {
    const input = options?.input === undefined ? undefined : textOf(options.input);
    this.calls.push({ cmd, args: [...args], input });
    let r: ExecResult;
    if (cmd === 'ipvsadm' && args.join(' ') !== '-R') r = this.ipvsadm(args);
    else if (cmd === 'ipvsadm-restore' || cmd === 'ipvsadm') {
      // The ipvsadm-restore script runs `ipvsadm -C` before `ipvsadm -R`.
      if (cmd === 'ipvsadm-restore') this.vs.clear();
      r = this.ok();
      if (this.failing.has('ipvsadm')) r = this.fail('Can\'t initialize ipvs', 2);
      else {
        for (const line of (input ?? '').split('\n')) {
          if (line.trim() === '') continue;
          const err = this.restoreLine(line);
          // ipvsadm's restore: a failing command ends the run with its error.
          if (err !== undefined) {
            r = this.fail(err, 2);
            break;
          }
        }
      }
    } else if (cmd === 'ipset') r = this.ipset(args, input);
    else if (cmd === 'ip') r = this.ip(args, input);
    else if (cmd === 'iptables-restore') r = this.failing.has('iptables-restore') ? this.fail('iptables-restore: line 3 failed') : this.ok();
    else if (cmd === 'iptables-save') r = this.ok('');
    else if (cmd === 'iptables') r = args.includes('-C') ? this.fail('no rule', 1) : this.ok();
    else if (cmd === 'conntrack') r = this.fail('0 flow entries have been deleted.', 1);
    else r = this.fail(`${cmd}: command not found`, 127);
    return Promise.resolve(r);
  };

  /** The inputs of every call to `cmd` (e.g. the ipvsadm-restore texts of each sync). */
  inputs(cmd: string): string[] {
    return this.calls.filter((c) => c.cmd === cmd || [c.cmd, ...c.args].join(' ') === cmd).filter((c) => c.input !== undefined).map((c) => c.input ?? '');
  }
}
