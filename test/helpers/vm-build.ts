/**
 * Builds the IPVS test VM from Debian's own kernel package, at test time (issue 5 allows
 * downloading Debian packages for this), and caches it:
 *
 *   apt-get download linux-image-<version>-amd64   (the package linux-image-amd64 depends on)
 *   dpkg-deb -x                                     → the kernel and its modules
 *   the uncompressed vmlinux cut out of vmlinuz     (TCG boots it faster: no in-guest xz)
 *   depmod -b                                       → modules.dep, so the guest's modprobe works
 *   an uncompressed newc initramfs: busybox-static, the virtio/9p/overlay modules, /init
 *
 * The guest does not carry userland of its own: /init mounts the host's root filesystem
 * read-only over virtio-9p with a tmpfs overlay on top and runs the job in it (see vm.ts), so
 * the guest uses the host's node, iproute2, iptables, ipset, ipvsadm and this checkout unchanged.
 *
 * Cache: `<cache>/<kernel version>-<builder hash>/`, where <cache> is $KPROXY_VM_CACHE, else
 * $XDG_CACHE_HOME/kproxy-vm, else /var/cache/kproxy-vm for root (~/.cache/kproxy-vm otherwise).
 * The builder hash covers this file, so any change to how the VM is built rebuilds it. A build
 * goes to a temporary directory renamed into place, so concurrent builders never see half a VM.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What a built VM consists of (all absolute paths on the host). */
export interface VmImage {
  /** The kernel's release, e.g. 6.1.0-56-amd64 (`uname -r` in the guest). */
  readonly version: string;
  /** The Debian package it came from, e.g. linux-image-6.1.0-56-amd64=6.1.192-2. */
  readonly packageName: string;
  readonly kernel: string;
  readonly initramfs: string;
  /** <dir>/root/lib/modules/<version>: bind-mounted at /lib/modules/<version> in the guest. */
  readonly modulesDir: string;
  readonly dir: string;
  /** True when this call built it (false: found in the cache). */
  readonly built: boolean;
  readonly buildMs: number;
}

/** Modules /init loads (with their dependencies, in order) before it can mount the host root. */
export const BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'] as const;

/** Mount tags of the two 9p shares; /init and vm.ts agree on them. */
export const HOSTROOT_TAG = 'hostroot';
export const JOB_TAG = 'kproxyjob';

/**
 * PID 1 of the guest (busybox sh). It mounts the host root read-only (9p) under a tmpfs
 * overlay at /newroot, gives it fresh /proc /sys /dev /run (not /tmp: a checkout under /tmp
 * must stay visible; writes there land in the overlay anyway), the job share at
 * /run/kproxy-vm and the kernel's modules at /lib/modules/<release>, loads the modules the
 * job asks for (vm.env: MODULES), and runs /run/kproxy-vm/job.sh chrooted in /newroot with
 * its output in the share. Then it powers off, so qemu ends by itself.
 */
const INIT = `#!/bin/busybox sh
B=/bin/busybox
export PATH=/bin
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
say() { echo "kproxy-vm: $*" > /dev/ttyS0; }
die() { say "FATAL: $*"; $B sync; $B poweroff -f; }
for m in $($B cat /modules/order); do $B insmod /modules/$m || die "insmod $m failed"; done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 ${HOSTROOT_TAG} /host || die "cannot mount the host root (9p)"
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 ${JOB_TAG} /job || die "cannot mount the job share (9p)"
. /job/vm.env
$B mount -t tmpfs -o mode=755 upper /upper
$B mkdir -p /upper/u /upper/w
$B mount -t overlay overlay -o lowerdir=/host,upperdir=/upper/u,workdir=/upper/w /newroot || die "cannot mount the overlay"
R=/newroot
$B mount -t proc proc $R/proc
$B mount -t sysfs sys $R/sys
$B mount -t devtmpfs dev $R/dev
$B mkdir -p $R/dev/pts $R/dev/shm
$B mount -t devpts devpts $R/dev/pts
$B mount -t tmpfs shm $R/dev/shm
$B mount -t tmpfs -o mode=755 run $R/run
$B mkdir -p $R/run/netns $R/run/kproxy-vm $R/lib/modules/$KVER
$B mount --bind /job $R/run/kproxy-vm
$B mount --bind $R$MODDIR $R/lib/modules/$KVER || die "cannot bind the kernel modules"
$B hostname kproxy-vm
$B ip link set lo up
if [ -n "$MODULES" ]; then
  $B chroot $R /sbin/modprobe -a $MODULES > /job/modprobe.log 2>&1 || die "modprobe failed: $($B cat /job/modprobe.log)"
fi
$B cat /proc/uptime > /job/started
$B chroot $R /bin/sh /run/kproxy-vm/job.sh > /job/stdout 2> /job/stderr < /dev/null
echo $? > /job/exit-code.tmp
$B cat /proc/uptime > /job/finished
$B mv /job/exit-code.tmp /job/exit-code
$B sync
$B poweroff -f
`;

export function vmCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const override = env['KPROXY_VM_CACHE'];
  if (override) return override;
  const xdg = env['XDG_CACHE_HOME'];
  if (xdg) return join(xdg, 'kproxy-vm');
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  return root ? '/var/cache/kproxy-vm' : join(homedir(), '.cache', 'kproxy-vm');
}

function run(cmd: string, args: readonly string[], options: { cwd?: string; input?: Buffer; timeoutMs?: number } = {}): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, [...args], {
    cwd: options.cwd,
    input: options.input,
    timeout: options.timeoutMs ?? 300_000,
    maxBuffer: 512 << 20,
    env: { ...process.env, LC_ALL: 'C' },
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new Error(`vm build: ${cmd} ${code === 'ENOENT' ? 'is not installed' : `failed: ${r.error.message}`}`);
  }
  if (r.status !== 0) {
    throw new Error(`vm build: ${[cmd, ...args].join(' ')} failed (exit ${r.status ?? r.signal}): ${r.stderr.toString().trim().slice(0, 2000)}`);
  }
  return r;
}

/**
 * The kernel package to boot: what linux-image-amd64 depends on in the apt lists (`apt-get
 * update` must have run), or $KPROXY_VM_KERNEL_PACKAGE. Returns name and candidate version.
 * One apt-cache call (about a second): this runs on every boot, so a new kernel in the
 * archive is picked up.
 */
export function resolveKernelPackage(env: NodeJS.ProcessEnv = process.env): { name: string; version: string } {
  const wanted = env['KPROXY_VM_KERNEL_PACKAGE'] || 'linux-image-amd64';
  const show = spawnSync('apt-cache', ['show', '--no-all-versions', wanted], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  if (show.error) throw new Error('vm build: apt-cache is not installed (the VM is built from Debian packages)');
  const text = show.stdout ?? '';
  if (show.status !== 0 || text.trim() === '') {
    throw new Error(`vm build: apt knows no package ${wanted} (run apt-get update first): ${(show.stderr ?? '').trim() || `exit ${show.status}`}`);
  }
  // The meta package names the versioned kernel package and its exact version in one line.
  const dep = /^Depends:.*?\b(linux-image-[0-9][^\s,]*-amd64) \(= ([^)\s]+)\)/m.exec(text);
  if (dep?.[1] && dep[2]) return { name: dep[1], version: dep[2] };
  const v = /^Version:\s*(\S+)/m.exec(text);
  if (wanted !== 'linux-image-amd64' && v?.[1]) return { name: wanted, version: v[1] };
  throw new Error(`vm build: cannot tell which kernel package ${wanted} stands for from apt-cache show`);
}

/** True when the ELF file at `path` has no program interpreter (is statically linked). */
export function isStaticElf(path: string): boolean {
  const b = readFileSync(path);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (b.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) return false;
  }
  return true;
}

/** A statically linked busybox (package busybox-static), which the initramfs runs as /init. */
export function findStaticBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox', '/usr/lib/initramfs-tools/bin/busybox']) {
    if (existsSync(p) && isStaticElf(p)) return p;
  }
  throw new Error('vm build: no statically linked busybox found (install busybox-static)');
}

/**
 * The uncompressed vmlinux inside a bzImage: finds the compressed payload by its magic and
 * decompresses it with xz/zstd/gzip. Returns undefined if no payload decompresses to an ELF.
 */
export function extractVmlinux(vmlinuz: Buffer): Buffer | undefined {
  const formats: [Buffer, string, string[]][] = [
    [Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), 'xz', ['-dc', '--single-stream']],
    [Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'zstd', ['-dc']],
    [Buffer.from([0x1f, 0x8b, 0x08]), 'gzip', ['-dc']],
  ];
  for (const [magic, cmd, args] of formats) {
    for (let at = vmlinuz.indexOf(magic); at >= 0; at = vmlinuz.indexOf(magic, at + 1)) {
      const r = spawnSync(cmd, args, { input: vmlinuz.subarray(at), maxBuffer: 1 << 30 });
      const out = r.stdout;
      if (out && out.length > 4 && out.readUInt32BE(0) === 0x7f454c46) return out;
    }
  }
  return undefined;
}

/** Hash of this builder: its compiled source (so a changed /init or step rebuilds). */
function builderHash(): string {
  const self = readFileSync(fileURLToPath(import.meta.url));
  return createHash('sha256').update(self).digest('hex').slice(0, 12);
}

function log(msg: string): void {
  if (process.env['KPROXY_VM_QUIET'] !== '1') process.stderr.write(`[kproxy-vm] ${msg}\n`);
}

/** The VM image for the current kernel package, from the cache or built now. */
export function buildVm(options: { cacheRoot?: string } = {}): VmImage {
  const t0 = Date.now();
  const cacheRoot = options.cacheRoot ?? vmCacheRoot();
  const pkg = resolveKernelPackage();
  const key = `${pkg.name}_${pkg.version}-${builderHash()}`.replace(/[^A-Za-z0-9._+-]/g, '_');
  const dir = join(cacheRoot, key);
  const manifest = join(dir, 'image.json');
  if (existsSync(manifest)) {
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as Omit<VmImage, 'built' | 'buildMs' | 'dir'>;
    return { ...m, dir, built: false, buildMs: Date.now() - t0 };
  }
  mkdirSync(cacheRoot, { recursive: true });
  const tmp = join(cacheRoot, `.build-${key}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    log(`building the test VM from ${pkg.name}=${pkg.version} into ${dir}`);
    // apt-get download writes into the cwd; as root it warns that _apt cannot write there.
    run('apt-get', ['download', '-q', `${pkg.name}=${pkg.version}`], { cwd: tmp });
    const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`vm build: apt-get download ${pkg.name} produced no .deb`);
    run('dpkg-deb', ['-x', join(tmp, deb), join(tmp, 'root')]);
    rmSync(join(tmp, deb));
    const modRoot = join(tmp, 'root', 'lib', 'modules');
    const versions = existsSync(modRoot) ? readdirSync(modRoot) : [];
    const version = versions.find((v) => existsSync(join(tmp, 'root', 'boot', `vmlinuz-${v}`)));
    if (!version) throw new Error(`vm build: ${pkg.name} holds no /boot/vmlinuz-<v> with /lib/modules/<v>`);
    run('depmod', ['-b', join(tmp, 'root'), version]);

    const vmlinuz = join(tmp, 'root', 'boot', `vmlinuz-${version}`);
    const vmlinux = extractVmlinux(readFileSync(vmlinuz));
    let kernel = vmlinuz;
    if (vmlinux) {
      kernel = join(tmp, 'vmlinux');
      writeFileSync(kernel, vmlinux);
    } else {
      log('could not extract an uncompressed vmlinux; booting the compressed vmlinuz (slower under TCG)');
    }

    // The initramfs: busybox, the boot modules in load order, /init.
    const stage = join(tmp, 'initramfs');
    for (const d of ['bin', 'proc', 'sys', 'dev', 'host', 'job', 'upper', 'newroot', 'modules']) mkdirSync(join(stage, d), { recursive: true });
    copyFileSync(findStaticBusybox(), join(stage, 'bin', 'busybox'));
    chmodSync(join(stage, 'bin', 'busybox'), 0o755);
    const order: string[] = [];
    for (const m of BOOT_MODULES) {
      const r = run('modprobe', ['-d', join(tmp, 'root'), '-S', version, '--show-depends', m]);
      for (const line of r.stdout.toString().split('\n')) {
        const path = /^insmod\s+(\S+)/.exec(line.trim())?.[1];
        if (!path) continue;
        const name = basename(path);
        if (order.includes(name)) continue;
        order.push(name);
        copyFileSync(path, join(stage, 'modules', name));
      }
    }
    writeFileSync(join(stage, 'modules', 'order'), `${order.join('\n')}\n`);
    writeFileSync(join(stage, 'init'), INIT, { mode: 0o755 });
    const list = run('find', ['.'], { cwd: stage }).stdout;
    const cpio = run(join(stage, 'bin', 'busybox'), ['cpio', '-o', '-H', 'newc', '-R', '0:0'], { cwd: stage, input: list }).stdout;
    writeFileSync(join(tmp, 'initramfs.cpio'), cpio);
    rmSync(stage, { recursive: true, force: true });

    const final = (p: string): string => p.replace(tmp, dir);
    const image: Omit<VmImage, 'built' | 'buildMs' | 'dir'> = {
      version,
      packageName: `${pkg.name}=${pkg.version}`,
      kernel: final(kernel),
      initramfs: final(join(tmp, 'initramfs.cpio')),
      modulesDir: final(join(modRoot, version)),
    };
    writeFileSync(join(tmp, 'image.json'), `${JSON.stringify(image, null, 2)}\n`);
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another process finished the same build first: use theirs.
      if (!existsSync(manifest)) throw err;
      rmSync(tmp, { recursive: true, force: true });
    }
    // Older builds (another kernel or builder) are no longer used: keep the cache to one image.
    for (const old of readdirSync(cacheRoot)) {
      if (old !== key && old.startsWith('linux-image-')) rmSync(join(cacheRoot, old), { recursive: true, force: true });
    }
    const ms = Date.now() - t0;
    log(`built in ${(ms / 1000).toFixed(1)} s (${(statSync(join(dir, 'initramfs.cpio')).size / 1e6).toFixed(1)} MB initramfs)`);
    return { ...image, dir, built: true, buildMs: ms };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
