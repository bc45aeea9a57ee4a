/**
 * The manifest source (`--manifests PATH`): Services, EndpointSlices, Endpoints and this node's
 * Node from a file, or from every *.yaml, *.yml and *.json under a folder (recursively, in
 * sorted order; names starting with '.' are skipped, so a ConfigMap volume's ..data is not read
 * twice). Changes are picked up by fs.watch plus a stat poll, debounced, and delivered as
 * add/update/delete events.
 *
 * A broken edit never drops services:
 * - a file that is not valid YAML/JSON keeps every object of its last good version;
 * - an invalid document keeps the last good version of the object it defines (matched by
 *   kind/namespace/name); when an invalid document cannot be matched to a previous object (no
 *   name, or a new name), no object of its kind (of any kind, if it has none) is removed from
 *   that file until the file is valid again;
 * - a file that cannot be read keeps its objects; so does everything when the path itself
 *   disappears (an unmounted volume is not a deletion).
 * Objects removed from a valid file, and the objects of a file removed from the folder, are
 * deleted. The same kind/namespace/name in two places: the first in sorted file order wins.
 * Problems are reported once per change of the file that causes them.
 */
import { createHash } from 'node:crypto';
import { watch, type Dirent, type FSWatcher } from 'node:fs';
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { KproxyError, errorMessage } from '../../core/errors.js';
import type { EventSink, Source, SourceEvent, SourceProblem } from '../../core/events.js';
import type { ApiObject } from '../../core/objects.js';
import { flat } from '../../core/text.js';
import { PROBLEM, convertObject, objectKey } from '../convert.js';
import { documentWhere, parseManifests } from './parse.js';

export interface ManifestSourceOptions {
  /** A manifest file, or a folder of them. */
  readonly path: string;
  /** Only the Node object with this name is delivered. */
  readonly nodeName: string;
  readonly onProblem: (p: SourceProblem) => void;
  /** Stat-poll period: the fallback when fs.watch misses a change. Default 500 ms. */
  readonly pollIntervalMs?: number;
  /** Quiet period after a change before re-reading. Default 20 ms. */
  readonly debounceMs?: number;
  /** Use fs.watch (default true). With false only the stat poll notices changes. */
  readonly watch?: boolean;
}

const EXTENSIONS = ['.yaml', '.yml', '.json'];
const DEFAULT_POLL_MS = 500;
/** Editors write a file in one go or in a few writes within milliseconds; a broken read is retried anyway. */
const DEFAULT_DEBOUNCE_MS = 20;
/** A stream of change notifications delays a re-read by at most this long. */
const MAX_DEBOUNCE_WAIT_MS = 400;

/** The objects one document (or List item) of a file contributes. */
interface FileEntry {
  /** kind/namespace/name of the document (for Endpoints: the Endpoints, not its slices). */
  readonly docKey: string;
  readonly kind: string;
  readonly objects: readonly ApiObject[];
  /** objectKey of each object, made once (every publish walks every object of every file). */
  readonly keys: readonly string[];
  /** "a.yaml document 2" (", items[3]" for a List item). */
  readonly where: string;
}

interface FileState {
  /** stat identity at the last read: device, inode, size, mtime, ctime. */
  readonly signature: string;
  /**
   * SHA-256 of the bytes last read, undefined when the file could never be read: a re-read with
   * the same digest changes nothing. (Not the text: at 10,000 services that kept 17 MB alive.)
   */
  readonly digest: string | undefined;
  /** Incremented on each content change; duplicate problems are re-reported when it changes. */
  readonly version: number;
  readonly readError: string | undefined;
  /** The objects in effect from this file, in document order (last good versions retained). */
  readonly entries: readonly FileEntry[];
}

interface Listing {
  /** Sorted. */
  readonly files: readonly string[];
  readonly signatures: ReadonlyMap<string, string>;
  readonly dirs: readonly string[];
  readonly failedDirs: readonly string[];
}

function isENOENT(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && (err.code === 'ENOENT' || err.code === 'ENOTDIR');
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describeObject(obj: ApiObject): string {
  return obj.kind === 'Node' ? `Node ${obj.name}` : `${obj.kind} ${obj.namespace}/${obj.name}`;
}

/** "Service/ns/name" → "Service ns/name"; "Node//n1" → "Node n1". */
function describeKey(key: string): string {
  const slash = key.indexOf('/');
  const rest = key.slice(slash + 1);
  return `${key.slice(0, slash)} ${rest.startsWith('/') ? rest.slice(1) : rest}`;
}

function sameIgnoringOrigin(a: ApiObject, b: ApiObject): boolean {
  const { origin: _a, ...restA } = a;
  const { origin: _b, ...restB } = b;
  return isDeepStrictEqual(restA, restB);
}

function addEvent(o: ApiObject): SourceEvent {
  switch (o.kind) {
    case 'Service': return { kind: 'Service', type: 'add', object: o };
    case 'EndpointSlice': return { kind: 'EndpointSlice', type: 'add', object: o };
    case 'Node': return { kind: 'Node', type: 'add', object: o };
  }
}

function deleteEvent(o: ApiObject): SourceEvent {
  switch (o.kind) {
    case 'Service': return { kind: 'Service', type: 'delete', object: o };
    case 'EndpointSlice': return { kind: 'EndpointSlice', type: 'delete', object: o };
    case 'Node': return { kind: 'Node', type: 'delete', object: o };
  }
}

function updateEvent(previous: ApiObject, o: ApiObject): SourceEvent {
  if (previous.kind === 'Service' && o.kind === 'Service') return { kind: 'Service', type: 'update', previous, object: o };
  if (previous.kind === 'EndpointSlice' && o.kind === 'EndpointSlice') return { kind: 'EndpointSlice', type: 'update', previous, object: o };
  if (previous.kind === 'Node' && o.kind === 'Node') return { kind: 'Node', type: 'update', previous, object: o };
  // Objects are keyed by kind, so this cannot happen.
  throw new Error(`object changed kind from ${previous.kind} to ${o.kind}`);
}

export class ManifestSource implements Source {
  readonly name = 'files';
  private readonly root: string;
  private readonly pollMs: number;
  private readonly debounceMs: number;
  private readonly useWatch: boolean;
  private mode: 'file' | 'dir' = 'dir';
  private sink: EventSink | undefined;
  private started = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  private files = new Map<string, FileState>();
  /** File paths in sorted order. */
  private order: string[] = [];
  /** What the sink has been told, by objectKey. */
  private readonly emitted = new Map<string, ApiObject>();
  private reportedDuplicates = new Set<string>();
  private rootProblem: string | undefined;
  private readonly dirProblems = new Map<string, string>();

  private readonly watchers = new Map<string, FSWatcher>();
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstChangeAt: number | undefined;
  private running: Promise<void> | undefined;
  private rerun = false;
  /** Re-read every file at the next scan, whatever its stat says. */
  private forceAll = false;
  /** Files fs.watch named since the last scan: re-read whatever their stat says. */
  private forceFiles = new Set<string>();

  constructor(private readonly opts: ManifestSourceOptions) {
    this.root = resolve(opts.path);
    this.pollMs = opts.pollIntervalMs ?? DEFAULT_POLL_MS;
    this.debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.useWatch = opts.watch ?? true;
  }

  async start(sink: EventSink): Promise<void> {
    if (this.started) throw new KproxyError('KP_ERR_MANIFEST_STARTED', 'the manifest source was already started');
    this.started = true;
    this.sink = sink;
    let isDir: boolean;
    try {
      isDir = (await stat(this.root)).isDirectory();
    } catch (err) {
      throw new KproxyError(PROBLEM.PATH, `--manifests ${this.opts.path}: cannot read it: ${errorMessage(err)}`, { cause: err });
    }
    this.mode = isDir ? 'dir' : 'file';
    this.running = this.scan(true);
    try {
      await this.running;
    } catch (err) {
      await this.close(); // watchers may already be running
      throw err;
    } finally {
      this.running = undefined;
    }
    if (this.closed) return;
    this.sink({ kind: 'synced', source: this.name });
    this.pollTimer = setInterval(() => {
      if (this.running === undefined && this.debounceTimer === undefined) this.kick();
    }, this.pollMs);
    if (this.rerun) {
      this.rerun = false;
      this.kick();
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
      if (this.debounceTimer !== undefined) clearTimeout(this.debounceTimer);
      this.pollTimer = undefined;
      this.debounceTimer = undefined;
      for (const w of this.watchers.values()) w.close();
      this.watchers.clear();
      await this.running?.catch(() => undefined);
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------------
  // Scheduling

  /**
   * A change notification: re-read after a quiet period. `force`: re-read that file (fs.watch
   * named it), or every file (true: fs.watch did not say which), even if its stat looks unchanged.
   */
  private schedule(force: boolean | string): void {
    if (this.closed) return;
    if (force === true) this.forceAll = true;
    else if (typeof force === 'string') this.forceFiles.add(force);
    const now = Date.now();
    this.firstChangeAt ??= now;
    if (this.debounceTimer !== undefined) clearTimeout(this.debounceTimer);
    const delay = Math.max(0, Math.min(this.debounceMs, this.firstChangeAt + MAX_DEBOUNCE_WAIT_MS - now));
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.firstChangeAt = undefined;
      this.kick();
    }, delay);
  }

  /** Runs one scan now, or once more after the running one. */
  private kick(): void {
    if (this.closed) return;
    if (this.running !== undefined) {
      this.rerun = true;
      return;
    }
    const force: boolean | ReadonlySet<string> = this.forceAll || this.forceFiles;
    this.forceAll = false;
    this.forceFiles = new Set();
    this.running = this.scan(force)
      .catch((err: unknown) => this.report({ code: PROBLEM.INTERNAL, where: this.opts.path, message: `re-reading the manifests failed: ${errorMessage(err)}` }))
      .finally(() => {
        this.running = undefined;
        if (this.rerun) {
          this.rerun = false;
          this.kick();
        }
      });
  }

  private report(p: SourceProblem): void {
    if (!this.closed) this.opts.onProblem(p);
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /**
   * Lists and stats the manifest files; reads the ones that changed, and the forced ones (all when
   * true; stat times can be too coarse to tell a rewrite fs.watch reported); publishes the differences.
   */
  private async scan(force: boolean | ReadonlySet<string>): Promise<void> {
    const listing = await this.list();
    if (listing === undefined || this.closed) return;
    let changed = false;
    const next = new Map<string, FileState>();
    for (const file of listing.files) {
      const signature = listing.signatures.get(file) ?? '';
      const prev = this.files.get(file);
      const forced = force === true || (force !== false && force.has(file));
      if (prev !== undefined && !forced && prev.signature === signature && prev.readError === undefined) {
        next.set(file, prev);
        continue;
      }
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (err) {
        if (isENOENT(err)) {
          changed ||= prev !== undefined;
          continue; // removed since the listing: a deletion
        }
        const message = errorMessage(err);
        if (prev?.readError !== message) {
          this.report({ code: PROBLEM.READ, where: file, message: `cannot read the file: ${message}; its objects stay as they were` });
        }
        next.set(file, { signature, digest: prev?.digest, version: prev?.version ?? 0, readError: message, entries: prev?.entries ?? [] });
        continue;
      }
      const digest = createHash('sha256').update(bytes).digest('base64');
      if (prev !== undefined && prev.digest === digest) {
        next.set(file, { ...prev, signature, readError: undefined });
        continue;
      }
      const loaded = this.load(file, bytes.toString('utf8'), prev);
      for (const p of loaded.problems) this.report(p);
      next.set(file, { signature, digest, version: (prev?.version ?? 0) + 1, readError: undefined, entries: loaded.entries });
      changed = true;
    }
    for (const [file, state] of this.files) {
      if (next.has(file)) continue;
      // Under a folder that could not be listed: unknown, so kept.
      if (listing.failedDirs.some((d) => file.startsWith(d + sep))) next.set(file, state);
      else changed = true;
    }
    if (this.closed) return;
    this.files = next;
    this.order = [...next.keys()].sort((a, b) => compare(relative(this.root, a), relative(this.root, b)));
    this.syncWatchers(listing.dirs);
    if (changed) this.publish();
  }

  /** The manifest files under the path, or undefined (reported) when the path cannot be read. */
  private async list(): Promise<Listing | undefined> {
    const signatures = new Map<string, string>();
    const dirs: string[] = [];
    const failedDirs: string[] = [];
    const signatureOf = (st: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string =>
      `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    try {
      if (this.mode === 'file') {
        dirs.push(dirname(this.root));
        signatures.set(this.root, signatureOf(await stat(this.root, { bigint: true })));
      } else {
        const seen = new Set<string>();
        const visit = async (dir: string): Promise<void> => {
          let entries: Dirent[];
          try {
            entries = await readdir(dir, { withFileTypes: true });
            seen.add(await realpath(dir));
          } catch (err) {
            if (dir === this.root) throw err;
            if (isENOENT(err)) return;
            failedDirs.push(dir);
            const message = errorMessage(err);
            if (this.dirProblems.get(dir) !== message) {
              this.dirProblems.set(dir, message);
              this.report({ code: PROBLEM.PATH, where: dir, message: `cannot list the folder: ${message}; the objects of its files stay as they were` });
            }
            return;
          }
          this.dirProblems.delete(dir);
          dirs.push(dir);
          const wanted = entries.sort((a, b) => compare(a.name, b.name))
            .filter((e) => !e.name.startsWith('.') && (e.isFile() || e.isDirectory() || e.isSymbolicLink()));
          // Stat them all at once (one after another costs a round trip each: 0.2 s for 200 files).
          const stats = await Promise.all(wanted.map((e) => stat(join(dir, e.name), { bigint: true }).catch(() => undefined)));
          for (const [k, e] of wanted.entries()) {
            const p = join(dir, e.name);
            const st = stats[k];
            if (st === undefined) continue; // vanished, or a dangling symlink
            if (st.isDirectory()) {
              const real = await realpath(p).catch(() => p);
              if (!seen.has(real)) await visit(p);
            } else if (st.isFile() && EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) {
              signatures.set(p, signatureOf(st));
            }
          }
        };
        await visit(this.root);
      }
    } catch (err) {
      const message = errorMessage(err);
      if (this.rootProblem !== message) {
        this.rootProblem = message;
        this.report({ code: PROBLEM.PATH, where: this.opts.path, message: `cannot read the manifests: ${message}; every object read before stays in effect` });
      }
      // Watch the parent, so that the path's return is noticed quickly.
      this.syncWatchers([dirname(this.root)]);
      return undefined;
    }
    this.rootProblem = undefined;
    const files = [...signatures.keys()].sort((a, b) => compare(relative(this.root, a), relative(this.root, b)));
    return { files, signatures, dirs, failedDirs };
  }

  /** Converts a file's text into its entries, retaining last good versions as the header says. */
  private load(file: string, text: string, prev: FileState | undefined): { entries: FileEntry[]; problems: SourceProblem[] } {
    const prevEntries = prev?.entries ?? [];
    const parsed = parseManifests(text, file);
    if (!parsed.ok) {
      const kept = prevEntries.reduce((n, e) => n + e.objects.length, 0);
      const note = kept > 0 ? `; the ${kept} object(s) of its last good version stay in effect` : '';
      return { entries: [...prevEntries], problems: parsed.problems.map((p) => ({ ...p, message: p.message + note })) };
    }
    const prevByKey = new Map(prevEntries.map((e) => [e.docKey, e]));
    const entries = new Map<string, FileEntry>();
    const problems: SourceProblem[] = [];
    /** Kinds of invalid documents that match no previous object ('*': no kind). */
    const unmatched = new Set<string>();
    for (const doc of parsed.documents) {
      const where = documentWhere(file, doc.index);
      // Kept with the entry: one flat string, not a rope holding its parts.
      const entryWhere = doc.path === '' ? where : flat`${where}, ${doc.path}`;
      const out = convertObject(doc.value, { origin: { source: this.name, file, document: doc.index }, where, path: doc.path });
      switch (out.status) {
        case 'ok': {
          problems.push(...out.warnings);
          const first = entries.get(out.key);
          if (first !== undefined) {
            problems.push({ code: PROBLEM.DUPLICATE_OBJECT, where: entryWhere, message: `${describeKey(out.key)} is defined twice in this file (first at ${first.where}); the first definition wins, this one is ignored` });
          } else {
            entries.set(out.key, { docKey: out.key, kind: out.kind, objects: out.objects, keys: out.objects.map(objectKey), where: entryWhere });
          }
          break;
        }
        case 'invalid': {
          const old = out.key === undefined ? undefined : prevByKey.get(out.key);
          const note = old !== undefined ? ` (${describeKey(old.docKey)} keeps its last good version)` : '';
          problems.push(...out.problems.map((p) => ({ ...p, message: p.message + note })));
          if (old !== undefined) {
            if (!entries.has(old.docKey)) entries.set(old.docKey, old);
          } else unmatched.add(out.kind ?? '*');
          break;
        }
        case 'ignored':
          problems.push(...out.problems);
          break;
      }
    }
    for (const e of prevEntries) {
      if (!entries.has(e.docKey) && (unmatched.has('*') || unmatched.has(e.kind))) entries.set(e.docKey, e);
    }
    return { entries: [...entries.values()], problems };
  }

  private syncWatchers(dirs: readonly string[]): void {
    if (!this.useWatch || this.closed) return;
    const want = new Set(dirs);
    for (const [dir, w] of this.watchers) {
      if (!want.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    const fileName = basename(this.root);
    for (const dir of want) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, (_event, name) => {
          if (this.mode === 'file' && name !== null && name !== fileName) return;
          this.schedule(name === null ? true : join(dir, name));
        });
        // A watcher that fails is dropped; the poll still notices changes.
        w.on('error', () => {
          w.close();
          if (this.watchers.get(dir) === w) this.watchers.delete(dir);
        });
        this.watchers.set(dir, w);
      } catch {
        // fs.watch is unavailable here (e.g. too many watches); the poll covers it.
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Publishing

  /** Computes the objects in effect and tells the sink what changed. */
  private publish(): void {
    // One Map of the objects in effect rather than a record per object (20,000 objects at 10,000
    // services, walked at every change of any file); where a duplicate's first definition is,
    // is searched only when there is one.
    const desired = new Map<string, ApiObject>();
    const duplicates = new Set<string>();
    for (const file of this.order) {
      const state = this.files.get(file);
      if (state === undefined) continue;
      for (const entry of state.entries) {
        for (let i = 0; i < entry.objects.length; i++) {
          const object = entry.objects[i] as ApiObject;
          if (object.kind === 'Node' && object.name !== this.opts.nodeName) continue;
          const key = entry.keys[i] ?? objectKey(object);
          if (!desired.has(key)) {
            desired.set(key, object);
            continue;
          }
          const first = this.firstDefinition(key);
          if (first === undefined || first.entry.where === entry.where) continue;
          const id = `${key}|${first.entry.where}@${first.state.version}|${entry.where}@${state.version}`;
          duplicates.add(id);
          if (!this.reportedDuplicates.has(id)) {
            this.report({
              code: PROBLEM.DUPLICATE_OBJECT,
              where: entry.where,
              message: `${describeObject(object)} is also defined at ${first.entry.where}; the first definition (in sorted file order) wins, this one is ignored`,
            });
          }
        }
      }
    }
    this.reportedDuplicates = duplicates;

    // `emitted` is brought up to `desired` in place: what changed is told, additions and
    // updates in file order, then deletions.
    const events: SourceEvent[] = [];
    desired.forEach((object, key) => {
      const prev = this.emitted.get(key);
      if (prev === object) return; // from a file that did not change: nothing to compare
      if (prev === undefined) events.push(addEvent(object));
      else if (!sameIgnoringOrigin(prev, object)) events.push(updateEvent(prev, object));
      else return;
      this.emitted.set(key, object);
    });
    // Every key of `desired` is in `emitted` now; any other is gone.
    if (this.emitted.size > desired.size) {
      this.emitted.forEach((prev, key) => {
        if (desired.has(key)) return;
        events.push(deleteEvent(prev));
        this.emitted.delete(key);
      });
    }
    const sink = this.sink;
    for (const e of events) {
      if (this.closed || sink === undefined) return;
      sink(e);
    }
  }

  /** The entry (and its file's state) that defines `key` first, in sorted file order: searched, as only a duplicate's message needs it. */
  private firstDefinition(key: string): { readonly entry: FileEntry; readonly state: FileState } | undefined {
    for (const file of this.order) {
      const state = this.files.get(file);
      const entry = state?.entries.find((e) => e.keys.includes(key));
      if (state !== undefined && entry !== undefined) return { entry, state };
    }
    return undefined;
  }
}
