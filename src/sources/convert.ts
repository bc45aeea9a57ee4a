/**
 * Conversion and validation of raw API objects (plain JS objects, as kubectl, YAML or the API
 * give them) into kproxy's typed objects. Pure: no I/O. Shared by the manifest source and the
 * Kubernetes API source.
 *
 * Contract:
 * - Defaults are applied as the API server applies them (Service type ClusterIP, protocol TCP,
 *   targetPort = port, sessionAffinity None, ClientIP timeout 10800, traffic policies Cluster,
 *   clusterIPs = [clusterIP]; EndpointSlice conditions ready=true, serving=ready,
 *   terminating=false; namespace "default").
 * - Validation follows the API server's rules where kube-proxy depends on them. Each problem
 *   names where it is (`<where>, <field path>`) and says why. An object with any problem is
 *   dropped whole; warnings leave the object in place.
 * - Deliberate deviations, because kproxy runs on laptops from plain files: loopback addresses
 *   are accepted for externalIPs and endpoints (the API server rejects them), and a NodePort
 *   Service without nodePort simply has none (there is no allocator).
 */
import { SCHEDULER_ANNOTATION, SCHEDULER_NAMES, WEIGHTS_ANNOTATION, isSchedulerName, parseWeights } from '../core/annotations.js';
import type { SourceProblem } from '../core/events.js';
import { namespacedName } from '../core/ids.js';
import { flat } from '../core/text.js';
import { ipFamily, isIP, parseCIDR, parseIPv4, parseIPv6, type IPFamily } from '../core/ip.js';
import {
  PROTOCOLS,
  type ApiObject,
  type EndpointConditions,
  type EndpointSliceObject,
  type EndpointSlicePort,
  type NodeObject,
  type Origin,
  type Protocol,
  type ServiceObject,
  type ServicePortSpec,
  type ServiceType,
  type SliceEndpoint,
  type TrafficPolicy,
} from '../core/objects.js';

/** Stable problem codes. Warnings (the object is kept) are marked. */
export const PROBLEM = {
  /** The path given to --manifests (or a folder in it) cannot be read. */
  PATH: 'KP_ERR_MANIFEST_PATH',
  /** A file cannot be read. */
  READ: 'KP_ERR_MANIFEST_READ',
  /** A file is not valid YAML/JSON. */
  SYNTAX: 'KP_ERR_MANIFEST_SYNTAX',
  /** A document is not a mapping. */
  NOT_AN_OBJECT: 'KP_ERR_MANIFEST_NOT_AN_OBJECT',
  MISSING_KIND: 'KP_ERR_MANIFEST_MISSING_KIND',
  /** A kind kproxy does not read (ignored; other objects are unaffected). */
  UNKNOWN_KIND: 'KP_ERR_MANIFEST_UNKNOWN_KIND',
  API_VERSION: 'KP_ERR_MANIFEST_API_VERSION',
  MISSING_NAME: 'KP_ERR_MANIFEST_MISSING_NAME',
  INVALID_NAME: 'KP_ERR_MANIFEST_INVALID_NAME',
  INVALID_LABEL: 'KP_ERR_MANIFEST_INVALID_LABEL',
  INVALID_ANNOTATION: 'KP_ERR_MANIFEST_INVALID_ANNOTATION',
  /** A field has the wrong JSON type (e.g. port: "80"). */
  FIELD_TYPE: 'KP_ERR_MANIFEST_FIELD_TYPE',
  REQUIRED: 'KP_ERR_MANIFEST_REQUIRED',
  /** A value outside its enumeration or otherwise malformed. */
  INVALID_VALUE: 'KP_ERR_MANIFEST_INVALID_VALUE',
  /** A field set where the API server forbids it. */
  NOT_ALLOWED: 'KP_ERR_MANIFEST_FIELD_NOT_ALLOWED',
  TOO_MANY: 'KP_ERR_MANIFEST_TOO_MANY',
  INVALID_IP: 'KP_ERR_MANIFEST_INVALID_IP',
  INVALID_CIDR: 'KP_ERR_MANIFEST_INVALID_CIDR',
  INVALID_PORT: 'KP_ERR_MANIFEST_INVALID_PORT',
  INVALID_NODE_PORT: 'KP_ERR_MANIFEST_INVALID_NODE_PORT',
  DUPLICATE_PORT: 'KP_ERR_MANIFEST_DUPLICATE_PORT',
  PORT_NAME_REQUIRED: 'KP_ERR_MANIFEST_PORT_NAME_REQUIRED',
  INVALID_PROTOCOL: 'KP_ERR_MANIFEST_INVALID_PROTOCOL',
  SESSION_AFFINITY_TIMEOUT: 'KP_ERR_MANIFEST_SESSION_AFFINITY_TIMEOUT',
  SCHEDULER_ANNOTATION: 'KP_ERR_MANIFEST_SCHEDULER_ANNOTATION',
  WEIGHTS_ANNOTATION: 'KP_ERR_MANIFEST_WEIGHTS_ANNOTATION',
  /** An EndpointSlice without the kubernetes.io/service-name label. */
  MISSING_SERVICE_NAME: 'KP_ERR_MANIFEST_MISSING_SERVICE_NAME',
  /** Warning: an EndpointSlice port without a port number; kube-proxy ignores it. */
  PORT_IGNORED: 'KP_ERR_MANIFEST_PORT_IGNORED',
  /** Warning: an Endpoints subset beyond the mirroring limit; the extra addresses are skipped. */
  MIRROR_TRUNCATED: 'KP_ERR_MANIFEST_MIRROR_TRUNCATED',
  /** The same kind/namespace/name defined twice; the first wins. */
  DUPLICATE_OBJECT: 'KP_ERR_MANIFEST_DUPLICATE_OBJECT',
  /** An unexpected failure inside the source (a bug); the source keeps running. */
  INTERNAL: 'KP_ERR_MANIFEST_INTERNAL',
} as const;
export type ProblemCode = (typeof PROBLEM)[keyof typeof PROBLEM];

export interface ConvertContext {
  readonly origin: Origin;
  /** Where the object is, e.g. "a.yaml document 2"; field paths are appended after ", ". */
  readonly where: string;
  /** Field path of the object inside its document ("items[3]" for a List item); '' or absent at top level. */
  readonly path?: string;
}

export type ConvertResult<T> =
  | { readonly ok: true; readonly object: T; readonly warnings: readonly SourceProblem[] }
  | { readonly ok: false; readonly problems: readonly SourceProblem[] };

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const SKIP_MIRROR_LABEL = 'endpointslice.kubernetes.io/skip-mirror';
export const MIRRORING_CONTROLLER_NAME = 'endpointslicemirroring-controller.k8s.io';
/** Upstream's --mirroring-max-endpoints-per-subset default. */
export const MAX_ENDPOINTS_PER_SUBSET = 1000;
const LEADER_ELECTION_ANNOTATION = 'control-plane.alpha.kubernetes.io/leader';
const LAST_CHANGE_TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';
const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';
const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';
const DEFAULT_AFFINITY_TIMEOUT = 10800;
const MAX_AFFINITY_TIMEOUT = 86400;

// ---------------------------------------------------------------------------------------------
// Raw-object reading

type Raw = Readonly<Record<string, unknown>>;

/** Narrows a parsed value to a mapping. */
export function isRecord(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isString(v: unknown): v is string {
  return typeof v === 'string';
}
function isInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}
function isBoolean(v: unknown): v is boolean {
  return typeof v === 'boolean';
}
function isList(v: unknown): v is readonly unknown[] {
  return Array.isArray(v);
}
function isOneOf<T extends string>(allowed: readonly T[], v: string): v is T {
  return (allowed as readonly string[]).includes(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

function child(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}
function at(path: string, i: number): string {
  return `${path}[${i}]`;
}
function keyed(path: string, key: string): string {
  return `${path}[${key}]`;
}
function q(s: string): string {
  return JSON.stringify(s);
}

/** Collects problems for one object, with their locations. */
class Checker {
  readonly problems: SourceProblem[] = [];
  readonly warnings: SourceProblem[] = [];
  constructor(private readonly ctx: ConvertContext) {}

  where(field: string): string {
    const prefix = this.ctx.path ?? '';
    const full = prefix === '' ? field : field === '' ? prefix : `${prefix}.${field}`;
    return full === '' ? this.ctx.where : `${this.ctx.where}, ${full}`;
  }
  fail(code: ProblemCode, field: string, message: string): void {
    this.problems.push({ code, where: this.where(field), message });
  }
  warn(code: ProblemCode, field: string, message: string): void {
    this.warnings.push({ code, where: this.where(field), message });
  }
  failed<T>(): ConvertResult<T> {
    return { ok: false, problems: this.problems };
  }
  result<T>(make: () => T): ConvertResult<T> {
    if (this.problems.length > 0) return { ok: false, problems: this.problems };
    return { ok: true, object: make(), warnings: this.warnings };
  }

  /** obj[key], type-checked; null and absent are both "unset" (as in the API's JSON). */
  private typed<T>(obj: Raw, path: string, key: string, expect: string, test: (v: unknown) => v is T): T | undefined {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (test(v)) return v;
    this.fail(PROBLEM.FIELD_TYPE, child(path, key), `must be ${expect}, got ${describe(v)}`);
    return undefined;
  }
  str(obj: Raw, path: string, key: string): string | undefined {
    return this.typed(obj, path, key, 'a string', isString);
  }
  int(obj: Raw, path: string, key: string): number | undefined {
    return this.typed(obj, path, key, 'an integer', isInteger);
  }
  bool(obj: Raw, path: string, key: string): boolean | undefined {
    return this.typed(obj, path, key, 'true or false', isBoolean);
  }
  rec(obj: Raw, path: string, key: string): Raw | undefined {
    return this.typed(obj, path, key, 'a mapping', isRecord);
  }
  list(obj: Raw, path: string, key: string): readonly unknown[] | undefined {
    return this.typed(obj, path, key, 'a list', isList);
  }
  /** Each element of a list as a mapping, with its path; wrong elements are reported and skipped. */
  records(obj: Raw, path: string, key: string): { item: Raw; path: string }[] {
    const items = this.list(obj, path, key) ?? [];
    const out: { item: Raw; path: string }[] = [];
    items.forEach((item, i) => {
      const p = at(child(path, key), i);
      if (isRecord(item)) out.push({ item, path: p });
      else this.fail(PROBLEM.FIELD_TYPE, p, `must be a mapping, got ${describe(item)}`);
    });
    return out;
  }
  strings(obj: Raw, path: string, key: string): { value: string; path: string }[] {
    const items = this.list(obj, path, key) ?? [];
    const out: { value: string; path: string }[] = [];
    items.forEach((item, i) => {
      const p = at(child(path, key), i);
      if (typeof item === 'string') out.push({ value: item, path: p });
      else this.fail(PROBLEM.FIELD_TYPE, p, `must be a string, got ${describe(item)}`);
    });
    return out;
  }
  stringMap(obj: Raw, path: string, key: string): Record<string, string> {
    const m = this.rec(obj, path, key);
    const out: Record<string, string> = {};
    if (!m) return out;
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === 'string') out[k] = v;
      else this.fail(PROBLEM.FIELD_TYPE, keyed(child(path, key), k), `must be a string, got ${describe(v)} (quote it in YAML)`);
    }
    return out;
  }
  enumOf<T extends string>(obj: Raw, path: string, key: string, allowed: readonly T[], code: ProblemCode = PROBLEM.INVALID_VALUE): T | undefined {
    const v = this.str(obj, path, key);
    if (v === undefined || v === '') return undefined;
    if (isOneOf(allowed, v)) return v;
    this.fail(code, child(path, key), `must be one of ${allowed.join(', ')}, got ${q(v)}`);
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Name and value rules (the API server's)

interface NameRule {
  readonly test: (s: string) => boolean;
  readonly description: string;
}

const DNS1123_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL_RE = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL_RE.test(s);
}
export function isDNS1123Subdomain(s: string): boolean {
  return s.length <= 253 && s.split('.').every((l) => DNS1123_LABEL_RE.test(l));
}
export function isDNS1035Label(s: string): boolean {
  return s.length <= 63 && DNS1035_LABEL_RE.test(s);
}
/** IANA_SVC_NAME: the form of a named targetPort. */
function isPortName(s: string): boolean {
  return s.length <= 15 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(s) && !s.includes('--') && /[a-z]/.test(s);
}
const QUALIFIED_NAME_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
function isQualifiedName(s: string): boolean {
  const slash = s.indexOf('/');
  const name = slash < 0 ? s : s.slice(slash + 1);
  if (slash >= 0) {
    const prefix = s.slice(0, slash);
    if (prefix === '' || !isDNS1123Subdomain(prefix)) return false;
  }
  return name.length <= 63 && QUALIFIED_NAME_RE.test(name);
}
function isLabelValue(s: string): boolean {
  return s === '' || (s.length <= 63 && QUALIFIED_NAME_RE.test(s));
}

const DNS1123_LABEL: NameRule = {
  test: isDNS1123Label,
  description: "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
};
const DNS1123_SUBDOMAIN: NameRule = {
  test: isDNS1123Subdomain,
  description: "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
};
const DNS1035_LABEL: NameRule = {
  test: isDNS1035Label,
  description: "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters)",
};

function inCIDR(cidr: string, ip: string): boolean {
  return parseCIDR(cidr)?.contains(ip) ?? false;
}
function isUnspecified(ip: string): boolean {
  return ip === '0.0.0.0' || (parseIPv6(ip)?.every((g) => g === 0) ?? false);
}
/** Addresses no Service may use: unspecified, link-local, multicast (loopback is allowed, see the header). */
function specialIPReason(ip: string): string | undefined {
  if (isUnspecified(ip)) return 'may not be unspecified (0.0.0.0 or ::)';
  if (inCIDR('169.254.0.0/16', ip) || inCIDR('fe80::/10', ip)) return 'may not be in the link-local range (169.254.0.0/16, fe80::/10)';
  if (inCIDR('224.0.0.0/4', ip) || inCIDR('ff00::/8', ip)) return 'may not be a multicast address (224.0.0.0/4, ff00::/8)';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Shared parts: type meta, object meta, ports, annotations

function checkTypeMeta(c: Checker, raw: Raw, kind: string, apiVersion: string): void {
  const av = c.str(raw, '', 'apiVersion');
  if (av !== undefined && av !== apiVersion) {
    c.fail(PROBLEM.API_VERSION, 'apiVersion', `${kind} must have apiVersion ${q(apiVersion)}, got ${q(av)}`);
  }
  const k = c.str(raw, '', 'kind');
  if (k !== undefined && k !== kind) c.fail(PROBLEM.INVALID_VALUE, 'kind', `expected kind ${q(kind)}, got ${q(k)}`);
}

interface Meta {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

function readMeta(c: Checker, raw: Raw, namespaced: boolean, nameRule: NameRule): Meta {
  const m = c.rec(raw, '', 'metadata') ?? {};
  const name = c.str(m, 'metadata', 'name') ?? '';
  if (name === '' && typeof m.name !== 'string' && m.name !== undefined && m.name !== null) {
    // Wrong type: already reported.
  } else if (name === '') {
    const generate = c.str(m, 'metadata', 'generateName');
    c.fail(PROBLEM.MISSING_NAME, 'metadata.name', generate === undefined
      ? 'required: every object needs a name'
      : 'required: metadata.generateName needs an API server to pick the name; set metadata.name in a manifest');
  } else if (!nameRule.test(name)) {
    c.fail(PROBLEM.INVALID_NAME, 'metadata.name', `must be ${nameRule.description}, got ${q(name)}`);
  }
  let namespace = '';
  if (namespaced) {
    namespace = c.str(m, 'metadata', 'namespace') ?? '';
    if (namespace === '') namespace = 'default';
    else if (!isDNS1123Label(namespace)) c.fail(PROBLEM.INVALID_NAME, 'metadata.namespace', `must be ${DNS1123_LABEL.description}, got ${q(namespace)}`);
  }
  const labels = c.stringMap(m, 'metadata', 'labels');
  for (const [k, v] of Object.entries(labels)) {
    const p = keyed('metadata.labels', k);
    if (!isQualifiedName(k)) c.fail(PROBLEM.INVALID_LABEL, p, `label key ${q(k)} must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`);
    else if (!isLabelValue(v)) c.fail(PROBLEM.INVALID_LABEL, p, `label value ${q(v)} must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`);
  }
  const annotations = c.stringMap(m, 'metadata', 'annotations');
  for (const k of Object.keys(annotations)) {
    if (!isQualifiedName(k)) c.fail(PROBLEM.INVALID_ANNOTATION, keyed('metadata.annotations', k), `annotation key ${q(k)} must be a qualified name (optional DNS subdomain prefix and '/', then a name)`);
  }
  checkKproxyAnnotations(c, annotations);
  return { name, namespace, labels, annotations };
}

function checkKproxyAnnotations(c: Checker, annotations: Readonly<Record<string, string>>): void {
  const sched = annotations[SCHEDULER_ANNOTATION];
  if (sched !== undefined && !isSchedulerName(sched)) {
    c.fail(PROBLEM.SCHEDULER_ANNOTATION, keyed('metadata.annotations', SCHEDULER_ANNOTATION),
      `unknown scheduler ${q(sched)}: must be one of ${SCHEDULER_NAMES.join(', ')}`);
  }
  const weights = annotations[WEIGHTS_ANNOTATION];
  if (weights !== undefined) {
    const p = keyed('metadata.annotations', WEIGHTS_ANNOTATION);
    const parsed = parseWeights(weights);
    if (!parsed.ok) c.fail(PROBLEM.WEIGHTS_ANNOTATION, p, `invalid weights: ${parsed.error}`);
    else {
      for (const addr of parsed.weights.keys()) {
        if (!isIP(addr)) c.fail(PROBLEM.WEIGHTS_ANNOTATION, p, `invalid weights: key ${q(addr)} is not an endpoint IP address`);
      }
    }
  }
}

function readProtocol(c: Checker, obj: Raw, path: string): Protocol {
  return c.enumOf(obj, path, 'protocol', PROTOCOLS, PROBLEM.INVALID_PROTOCOL) ?? 'TCP';
}

/** A required port number in 1..65535; 0 when missing or invalid (the problem is recorded). */
function readPortNumber(c: Checker, obj: Raw, path: string, key: string): number {
  const v = c.int(obj, path, key);
  const p = child(path, key);
  if (v === undefined) {
    if (obj[key] === undefined || obj[key] === null) c.fail(PROBLEM.REQUIRED, p, 'required: a port number in 1..65535');
    return 0;
  }
  if (v < 1 || v > 65535) {
    c.fail(PROBLEM.INVALID_PORT, p, `port ${v} is out of range: must be between 1 and 65535, inclusive`);
    return 0;
  }
  return v;
}

/** Port names: required when there is more than one port, DNS-1123 labels, unique. */
function checkPortNames(c: Checker, ports: readonly { name: string; path: string }[], what: string): void {
  const seen = new Map<string, string>();
  for (const { name, path } of ports) {
    const p = child(path, 'name');
    if (name === '') {
      if (ports.length > 1) c.fail(PROBLEM.PORT_NAME_REQUIRED, p, `required: every port needs a name when ${what} has more than one port`);
      continue;
    }
    if (!isDNS1123Label(name)) c.fail(PROBLEM.INVALID_NAME, p, `port name must be ${DNS1123_LABEL.description}, got ${q(name)}`);
    const first = seen.get(name);
    if (first !== undefined) c.fail(PROBLEM.DUPLICATE_PORT, p, `duplicate port name ${q(name)} (also ${first})`);
    else seen.set(name, c.where(path));
  }
}

// ---------------------------------------------------------------------------------------------
// Service (v1)

const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const TRAFFIC_POLICIES: readonly TrafficPolicy[] = ['Cluster', 'Local'];
const AFFINITIES: readonly ('None' | 'ClientIP')[] = ['None', 'ClientIP'];
const IP_MODES: readonly string[] = ['VIP', 'Proxy'];

export function convertService(raw: unknown, ctx: ConvertContext): ConvertResult<ServiceObject> {
  const c = new Checker(ctx);
  if (!isRecord(raw)) {
    c.fail(PROBLEM.NOT_AN_OBJECT, '', `a Service must be a mapping, got ${describe(raw)}`);
    return c.failed();
  }
  checkTypeMeta(c, raw, 'Service', 'v1');
  const meta = readMeta(c, raw, true, DNS1035_LABEL);
  const spec = c.rec(raw, '', 'spec') ?? {};
  const type = c.enumOf(spec, 'spec', 'type', SERVICE_TYPES) ?? 'ClusterIP';
  const hasNodePorts = type === 'NodePort' || type === 'LoadBalancer';

  // Cluster IPs.
  const clusterIPField = c.str(spec, 'spec', 'clusterIP');
  const clusterIPsField = spec.clusterIPs === undefined || spec.clusterIPs === null ? undefined : c.strings(spec, 'spec', 'clusterIPs');
  if (clusterIPField !== undefined && clusterIPField !== '' && clusterIPField !== 'None' && !isIP(clusterIPField)) {
    c.fail(PROBLEM.INVALID_IP, 'spec.clusterIP', `${q(clusterIPField)} is not a valid IP address (or "None" for a headless Service)`);
  }
  for (const { value, path } of clusterIPsField ?? []) {
    if (value === 'None') {
      if ((clusterIPsField?.length ?? 0) > 1) c.fail(PROBLEM.INVALID_VALUE, path, '"None" must be the only entry of spec.clusterIPs');
    } else if (!isIP(value)) c.fail(PROBLEM.INVALID_IP, path, `${q(value)} is not a valid IP address`);
  }
  const firstOfList = clusterIPsField?.[0]?.value;
  if (clusterIPField !== undefined && clusterIPField !== '' && firstOfList !== undefined && firstOfList !== clusterIPField) {
    c.fail(PROBLEM.INVALID_VALUE, 'spec.clusterIPs[0]', `must match spec.clusterIP (${q(clusterIPField)}), got ${q(firstOfList)}`);
  }
  const clusterIP = clusterIPField !== undefined && clusterIPField !== '' ? clusterIPField : firstOfList ?? '';
  const clusterIPs = clusterIPsField !== undefined && clusterIPsField.length > 0
    ? clusterIPsField.map((x) => x.value)
    : clusterIP === '' ? [] : [clusterIP];
  if (clusterIPs.length > 2) c.fail(PROBLEM.TOO_MANY, 'spec.clusterIPs', `at most two addresses (one IPv4, one IPv6), got ${clusterIPs.length}`);
  else if (clusterIPs.length === 2 && ipFamily(clusterIPs[0] ?? '') === ipFamily(clusterIPs[1] ?? '')) {
    c.fail(PROBLEM.INVALID_VALUE, 'spec.clusterIPs[1]', 'dual-stack cluster IPs must be one IPv4 and one IPv6 address');
  }
  if (type === 'ExternalName') {
    if (clusterIP !== '') c.fail(PROBLEM.NOT_ALLOWED, 'spec.clusterIP', 'may not be set when `type` is \'ExternalName\'');
    const externalName = c.str(spec, 'spec', 'externalName') ?? '';
    if (externalName === '') c.fail(PROBLEM.REQUIRED, 'spec.externalName', 'required when `type` is \'ExternalName\'');
    else if (!isDNS1123Subdomain(externalName.replace(/\.$/, ''))) {
      c.fail(PROBLEM.INVALID_VALUE, 'spec.externalName', `must be ${DNS1123_SUBDOMAIN.description}, got ${q(externalName)}`);
    }
  } else if (clusterIP === 'None' && hasNodePorts) {
    c.fail(PROBLEM.INVALID_VALUE, 'spec.clusterIP', `may not be "None" when \`type\` is '${type}'`);
  }

  // Ports.
  const portItems = c.records(spec, 'spec', 'ports');
  if (portItems.length === 0 && type !== 'ExternalName' && clusterIP !== 'None' && !c.problems.some((p) => p.where === c.where('spec.ports'))) {
    c.fail(PROBLEM.REQUIRED, 'spec.ports', 'required: a Service needs at least one port (unless it is headless or ExternalName)');
  }
  const named = portItems.map(({ item, path }) => ({ name: c.str(item, path, 'name') ?? '', path }));
  checkPortNames(c, named, 'a Service');
  const ports: ServicePortSpec[] = [];
  const seenPort = new Map<string, string>();
  const seenNodePort = new Map<string, string>();
  portItems.forEach(({ item, path }, i) => {
    const name = named[i]?.name ?? '';
    const protocol = readProtocol(c, item, path);
    const port = readPortNumber(c, item, path, 'port');
    let targetPort: number | string = port;
    const tp = item.targetPort;
    const tpPath = child(path, 'targetPort');
    if (typeof tp === 'number') {
      if (!Number.isInteger(tp) || tp < 0 || tp > 65535) c.fail(PROBLEM.INVALID_PORT, tpPath, `targetPort ${tp} is out of range: must be between 1 and 65535, inclusive`);
      else if (tp !== 0) targetPort = tp;
    } else if (typeof tp === 'string') {
      if (tp !== '') {
        if (!isPortName(tp)) {
          c.fail(PROBLEM.INVALID_PORT, tpPath, /^[0-9]+$/.test(tp)
            ? `targetPort ${q(tp)} is a string: write a number without quotes, or a container port name`
            : `targetPort ${q(tp)} must be a number in 1..65535 or a container port name (at most 15 lowercase letters, digits and '-', with at least one letter)`);
        } else targetPort = tp;
      }
    } else if (tp !== undefined && tp !== null) {
      c.fail(PROBLEM.FIELD_TYPE, tpPath, `must be a number or a port name, got ${describe(tp)}`);
    }
    let nodePort = 0;
    const np = c.int(item, path, 'nodePort');
    const npPath = child(path, 'nodePort');
    if (np !== undefined && np !== 0) {
      if (np < 1 || np > 65535) c.fail(PROBLEM.INVALID_NODE_PORT, npPath, `nodePort ${np} is out of range: must be between 1 and 65535, inclusive`);
      else if (!hasNodePorts) c.fail(PROBLEM.INVALID_NODE_PORT, npPath, `may not be used when \`type\` is '${type}' (only NodePort and LoadBalancer Services have node ports)`);
      else {
        nodePort = np;
        const key = `${np}/${protocol}`;
        const first = seenNodePort.get(key);
        if (first !== undefined) c.fail(PROBLEM.INVALID_NODE_PORT, npPath, `duplicate nodePort ${key} (also ${first})`);
        else seenNodePort.set(key, c.where(npPath));
      }
    }
    if (port !== 0) {
      const key = `${port}/${protocol}`;
      const first = seenPort.get(key);
      if (first !== undefined) c.fail(PROBLEM.DUPLICATE_PORT, path, `duplicate port ${key} (also ${first})`);
      else seenPort.set(key, c.where(path));
    }
    ports.push({ name, protocol, port, targetPort, nodePort });
  });

  // External addresses.
  const externalIPs: string[] = [];
  for (const { value, path } of c.strings(spec, 'spec', 'externalIPs')) {
    if (!isIP(value)) c.fail(PROBLEM.INVALID_IP, path, `${q(value)} is not a valid IP address`);
    else {
      const why = specialIPReason(value);
      if (why !== undefined) c.fail(PROBLEM.INVALID_IP, path, `${q(value)} ${why}`);
      else externalIPs.push(value);
    }
  }
  const loadBalancerIPs: string[] = [];
  const status = c.rec(raw, '', 'status') ?? {};
  const lb = c.rec(status, 'status', 'loadBalancer') ?? {};
  for (const { item, path } of c.records(lb, 'status.loadBalancer', 'ingress')) {
    const ip = c.str(item, path, 'ip');
    const ipMode = c.enumOf(item, path, 'ipMode', IP_MODES);
    if (ip === undefined || ip === '') continue; // hostname-only ingress: nothing for kube-proxy
    if (!isIP(ip)) c.fail(PROBLEM.INVALID_IP, child(path, 'ip'), `${q(ip)} is not a valid IP address`);
    // Upstream (LoadBalancerIPMode): an ingress IP with ipMode Proxy is not programmed on nodes.
    else if (ipMode !== 'Proxy') loadBalancerIPs.push(ip);
  }
  const loadBalancerSourceRanges: string[] = [];
  const ranges = c.strings(spec, 'spec', 'loadBalancerSourceRanges');
  if (ranges.length > 0 && type !== 'LoadBalancer') {
    c.fail(PROBLEM.NOT_ALLOWED, 'spec.loadBalancerSourceRanges', 'may only be used when `type` is \'LoadBalancer\'');
  }
  for (const { value, path } of ranges) {
    const cidr = value.trim();
    if (parseCIDR(cidr) === undefined) c.fail(PROBLEM.INVALID_CIDR, path, `${q(value)} is not a valid CIDR (e.g. "203.0.113.0/24" or "2001:db8::/32")`);
    else loadBalancerSourceRanges.push(cidr);
  }

  // Session affinity.
  const sessionAffinity = c.enumOf(spec, 'spec', 'sessionAffinity', AFFINITIES) ?? 'None';
  const affinityConfig = c.rec(spec, 'spec', 'sessionAffinityConfig');
  const clientIPConfig = affinityConfig ? c.rec(affinityConfig, 'spec.sessionAffinityConfig', 'clientIP') : undefined;
  const timeoutPath = 'spec.sessionAffinityConfig.clientIP.timeoutSeconds';
  const timeout = clientIPConfig ? c.int(clientIPConfig, 'spec.sessionAffinityConfig.clientIP', 'timeoutSeconds') : undefined;
  let sessionAffinityTimeoutSeconds = 0;
  if (sessionAffinity === 'ClientIP') {
    sessionAffinityTimeoutSeconds = timeout ?? DEFAULT_AFFINITY_TIMEOUT;
    if (timeout !== undefined && (timeout < 1 || timeout > MAX_AFFINITY_TIMEOUT)) {
      c.fail(PROBLEM.SESSION_AFFINITY_TIMEOUT, timeoutPath, `timeout ${timeout} is out of range: must be between 1 and ${MAX_AFFINITY_TIMEOUT} seconds (24 hours), inclusive`);
    }
  } else if (clientIPConfig !== undefined) {
    c.fail(PROBLEM.NOT_ALLOWED, 'spec.sessionAffinityConfig', 'must not be set when sessionAffinity is None');
  }

  // Traffic policies.
  const externallyAccessible = hasNodePorts || (type === 'ClusterIP' && externalIPs.length > 0);
  const etp = c.enumOf(spec, 'spec', 'externalTrafficPolicy', TRAFFIC_POLICIES);
  if (etp !== undefined && !externallyAccessible) {
    c.fail(PROBLEM.NOT_ALLOWED, 'spec.externalTrafficPolicy', 'may only be set for externally-accessible services (NodePort, LoadBalancer, or with externalIPs)');
  }
  const externalTrafficPolicy = etp ?? 'Cluster';
  const internalTrafficPolicy = c.enumOf(spec, 'spec', 'internalTrafficPolicy', TRAFFIC_POLICIES) ?? 'Cluster';
  const healthCheckNodePort = c.int(spec, 'spec', 'healthCheckNodePort') ?? 0;
  if (healthCheckNodePort !== 0) {
    if (healthCheckNodePort < 1 || healthCheckNodePort > 65535) {
      c.fail(PROBLEM.INVALID_NODE_PORT, 'spec.healthCheckNodePort', `healthCheckNodePort ${healthCheckNodePort} is out of range: must be between 1 and 65535, inclusive`);
    } else if (type !== 'LoadBalancer' || externalTrafficPolicy !== 'Local') {
      c.fail(PROBLEM.NOT_ALLOWED, 'spec.healthCheckNodePort', 'may only be set when `type` is \'LoadBalancer\' and `externalTrafficPolicy` is \'Local\'');
    }
  }

  return c.result((): ServiceObject => ({
    kind: 'Service',
    id: namespacedName(meta.namespace, meta.name),
    namespace: meta.namespace,
    name: meta.name,
    labels: meta.labels,
    annotations: meta.annotations,
    type,
    clusterIP,
    clusterIPs,
    ports,
    externalIPs,
    loadBalancerIPs,
    loadBalancerSourceRanges,
    sessionAffinity,
    sessionAffinityTimeoutSeconds,
    externalTrafficPolicy,
    internalTrafficPolicy,
    healthCheckNodePort,
    origin: ctx.origin,
  }));
}

// ---------------------------------------------------------------------------------------------
// EndpointSlice (discovery.k8s.io/v1)

const ADDRESS_TYPES: readonly ('IPv4' | 'IPv6' | 'FQDN')[] = ['IPv4', 'IPv6', 'FQDN'];
const MAX_SLICE_ENDPOINTS = 1000;
const MAX_ENDPOINT_ADDRESSES = 100;
const MAX_SLICE_PORTS = 100;
const MAX_ZONE_HINTS = 8;
const MAX_NODE_HINTS = 8;

function addressProblem(addressType: 'IPv4' | 'IPv6' | 'FQDN', address: string): string | undefined {
  switch (addressType) {
    case 'IPv4':
      if (parseIPv4(address) !== undefined) return undefined;
      return parseIPv6(address) !== undefined
        ? `${q(address)} is an IPv6 address, but the slice's addressType is IPv4`
        : `${q(address)} is not a valid IPv4 address (the slice's addressType is IPv4)`;
    case 'IPv6':
      if (parseIPv6(address) !== undefined) return undefined;
      return parseIPv4(address) !== undefined
        ? `${q(address)} is an IPv4 address, but the slice's addressType is IPv6`
        : `${q(address)} is not a valid IPv6 address (the slice's addressType is IPv6)`;
    case 'FQDN':
      return isDNS1123Subdomain(address) ? undefined : `${q(address)} is not a valid FQDN: must be ${DNS1123_SUBDOMAIN.description}`;
  }
}

/** The eight possible conditions, shared by every endpoint (100,000 objects at 10,000 services × 10). */
const CONDITIONS: readonly EndpointConditions[] = Array.from({ length: 8 }, (_, i) => Object.freeze({ ready: (i & 4) !== 0, serving: (i & 2) !== 0, terminating: (i & 1) !== 0 }));

function endpointConditions(ready: boolean, serving: boolean, terminating: boolean): EndpointConditions {
  return CONDITIONS[(ready ? 4 : 0) | (serving ? 2 : 0) | (terminating ? 1 : 0)] ?? { ready, serving, terminating };
}

export function convertEndpointSlice(raw: unknown, ctx: ConvertContext): ConvertResult<EndpointSliceObject> {
  const c = new Checker(ctx);
  if (!isRecord(raw)) {
    c.fail(PROBLEM.NOT_AN_OBJECT, '', `an EndpointSlice must be a mapping, got ${describe(raw)}`);
    return c.failed();
  }
  checkTypeMeta(c, raw, 'EndpointSlice', 'discovery.k8s.io/v1');
  const meta = readMeta(c, raw, true, DNS1123_SUBDOMAIN);
  const serviceName = meta.labels[SERVICE_NAME_LABEL] ?? '';
  if (serviceName === '') {
    c.fail(PROBLEM.MISSING_SERVICE_NAME, keyed('metadata.labels', SERVICE_NAME_LABEL),
      'required: kube-proxy only uses EndpointSlices that name their Service with this label');
  }
  const addressTypeRaw = c.str(raw, '', 'addressType');
  const addressType = c.enumOf(raw, '', 'addressType', ADDRESS_TYPES);
  if (addressTypeRaw === undefined && (raw.addressType === undefined || raw.addressType === null)) {
    c.fail(PROBLEM.REQUIRED, 'addressType', 'required: one of IPv4, IPv6, FQDN');
  }

  const portItems = c.records(raw, '', 'ports');
  if (portItems.length > MAX_SLICE_PORTS) c.fail(PROBLEM.TOO_MANY, 'ports', `at most ${MAX_SLICE_PORTS} ports, got ${portItems.length}`);
  const ports: EndpointSlicePort[] = [];
  const seenNames = new Map<string, string>();
  for (const { item, path } of portItems) {
    const name = c.str(item, path, 'name') ?? '';
    if (name !== '') {
      if (!isDNS1123Label(name)) c.fail(PROBLEM.INVALID_NAME, child(path, 'name'), `port name must be ${DNS1123_LABEL.description}, got ${q(name)}`);
      const first = seenNames.get(name);
      if (first !== undefined) c.fail(PROBLEM.DUPLICATE_PORT, child(path, 'name'), `duplicate port name ${q(name)} (also ${first})`);
      else seenNames.set(name, c.where(path));
    } else if (seenNames.has('')) {
      c.fail(PROBLEM.DUPLICATE_PORT, child(path, 'name'), `more than one unnamed port (also ${seenNames.get('') ?? ''})`);
    } else seenNames.set('', c.where(path));
    const protocol = readProtocol(c, item, path);
    if (item.port === undefined || item.port === null) {
      c.warn(PROBLEM.PORT_IGNORED, child(path, 'port'), 'no port number: kube-proxy ignores this port');
      continue;
    }
    const port = readPortNumber(c, item, path, 'port');
    if (port !== 0) ports.push({ name, protocol, port });
  }

  const endpointItems = c.records(raw, '', 'endpoints');
  if (endpointItems.length > MAX_SLICE_ENDPOINTS) c.fail(PROBLEM.TOO_MANY, 'endpoints', `at most ${MAX_SLICE_ENDPOINTS} endpoints, got ${endpointItems.length}`);
  const endpoints: SliceEndpoint[] = [];
  for (const { item, path } of endpointItems) {
    const addresses = c.strings(item, path, 'addresses');
    if (addresses.length === 0 && !c.problems.some((p) => p.where === c.where(child(path, 'addresses')))) {
      c.fail(PROBLEM.REQUIRED, child(path, 'addresses'), 'required: an endpoint needs at least one address');
    } else if (addresses.length > MAX_ENDPOINT_ADDRESSES) {
      c.fail(PROBLEM.TOO_MANY, child(path, 'addresses'), `at most ${MAX_ENDPOINT_ADDRESSES} addresses, got ${addresses.length}`);
    }
    if (addressType !== undefined) {
      for (const a of addresses) {
        const why = addressProblem(addressType, a.value);
        if (why !== undefined) c.fail(PROBLEM.INVALID_IP, a.path, why);
      }
    }
    const cond = c.rec(item, path, 'conditions') ?? {};
    const condPath = child(path, 'conditions');
    const ready = c.bool(cond, condPath, 'ready') ?? true;
    const serving = c.bool(cond, condPath, 'serving') ?? ready;
    const terminating = c.bool(cond, condPath, 'terminating') ?? false;
    const nodeName = c.str(item, path, 'nodeName');
    if (nodeName !== undefined && !isDNS1123Subdomain(nodeName)) {
      c.fail(PROBLEM.INVALID_NAME, child(path, 'nodeName'), `must be ${DNS1123_SUBDOMAIN.description}, got ${q(nodeName)}`);
    }
    const zone = c.str(item, path, 'zone');
    const hostname = c.str(item, path, 'hostname');
    if (hostname !== undefined && !isDNS1123Label(hostname)) {
      c.fail(PROBLEM.INVALID_NAME, child(path, 'hostname'), `must be ${DNS1123_LABEL.description}, got ${q(hostname)}`);
    }
    const hints = c.rec(item, path, 'hints');
    let zoneHints: string[] | undefined;
    let nodeHints: string[] | undefined;
    if (hints) {
      const hintsPath = child(path, 'hints');
      const forZones = c.records(hints, hintsPath, 'forZones');
      if (forZones.length > MAX_ZONE_HINTS) c.fail(PROBLEM.TOO_MANY, child(hintsPath, 'forZones'), `at most ${MAX_ZONE_HINTS} zone hints, got ${forZones.length}`);
      zoneHints = [];
      for (const z of forZones) {
        const zn = c.str(z.item, z.path, 'name');
        if (zn === undefined || zn === '') c.fail(PROBLEM.REQUIRED, child(z.path, 'name'), 'required: the zone name');
        else zoneHints.push(zn);
      }
      // hints.forNodes (discovery.k8s.io/v1 since Kubernetes 1.33, trafficDistribution PreferSameNode).
      const forNodes = c.records(hints, hintsPath, 'forNodes');
      if (forNodes.length > MAX_NODE_HINTS) c.fail(PROBLEM.TOO_MANY, child(hintsPath, 'forNodes'), `at most ${MAX_NODE_HINTS} node hints, got ${forNodes.length}`);
      if (forNodes.length > 0) nodeHints = [];
      for (const n of forNodes) {
        const nn = c.str(n.item, n.path, 'name');
        if (nn === undefined || nn === '') c.fail(PROBLEM.REQUIRED, child(n.path, 'name'), 'required: the node name');
        else nodeHints?.push(nn);
      }
    }
    endpoints.push({
      addresses: addresses.map((a) => a.value),
      conditions: endpointConditions(ready, serving, terminating),
      ...(nodeName !== undefined && nodeName !== '' ? { nodeName } : {}),
      ...(zone !== undefined && zone !== '' ? { zone } : {}),
      ...(hostname !== undefined && hostname !== '' ? { hostname } : {}),
      ...(zoneHints !== undefined ? { zoneHints } : {}),
      ...(nodeHints !== undefined ? { nodeHints } : {}),
    });
  }

  return c.result((): EndpointSliceObject => ({
    kind: 'EndpointSlice',
    id: namespacedName(meta.namespace, meta.name),
    namespace: meta.namespace,
    name: meta.name,
    serviceName,
    labels: meta.labels,
    annotations: meta.annotations,
    addressType: addressType ?? 'IPv4',
    ports,
    endpoints,
    origin: ctx.origin,
  }));
}

// ---------------------------------------------------------------------------------------------
// Endpoints (v1), mirrored into EndpointSlices as upstream's EndpointSliceMirroring controller does

const GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
/** Upstream's names.SimpleNameGenerator: the prefix is cut to 63 - 5 characters. */
const MAX_GENERATE_PREFIX = 58;

function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * The name of a mirrored slice: upstream's generateName prefix ("<endpoints-name>-", cut to 58
 * characters) plus five characters from upstream's generator alphabet. Upstream picks them at
 * random; kproxy derives them from the slice's address type and port set, so the name is
 * stable across edits of the addresses (an edit is an update, not a delete and an add).
 */
export function mirroredSliceName(endpointsName: string, seed: string): string {
  const prefix = `${endpointsName}-`.slice(0, MAX_GENERATE_PREFIX);
  let h = fnv1a32(`${endpointsName}\n${seed}`);
  let suffix = '';
  for (let i = 0; i < 5; i++) {
    suffix += GENERATE_NAME_ALPHABET.charAt(h % GENERATE_NAME_ALPHABET.length);
    h = Math.floor(h / GENERATE_NAME_ALPHABET.length);
  }
  return prefix + suffix;
}

interface MirrorGroup {
  readonly addressType: IPFamily;
  readonly portKey: string;
  readonly ports: readonly EndpointSlicePort[];
  readonly endpoints: SliceEndpoint[];
  readonly seen: Set<string>;
  readonly firstWhere: string;
}

/**
 * Converts a v1 Endpoints object into the EndpointSlices the mirroring controller would keep
 * for it: one slice per distinct (address family, port set), so normally one per subset;
 * addresses are ready endpoints, notReadyAddresses are ready=false (serving=false). Labels are
 * copied, plus kubernetes.io/service-name and the managed-by label; annotations are copied
 * except the trigger-time and last-applied ones. Endpoints labelled skip-mirror "true", or
 * carrying the leader-election annotation, yield no slices (as upstream).
 *
 * Unlike upstream, a matching selector-less Service is not required: with manifests there is
 * no endpoints controller, so an Endpoints object in a file is always meant to be used.
 */
export function convertEndpoints(raw: unknown, ctx: ConvertContext): ConvertResult<readonly EndpointSliceObject[]> {
  const c = new Checker(ctx);
  if (!isRecord(raw)) {
    c.fail(PROBLEM.NOT_AN_OBJECT, '', `an Endpoints object must be a mapping, got ${describe(raw)}`);
    return c.failed();
  }
  checkTypeMeta(c, raw, 'Endpoints', 'v1');
  const meta = readMeta(c, raw, true, DNS1123_SUBDOMAIN);
  const groups = new Map<string, MirrorGroup>();

  for (const { item: subset, path } of c.records(raw, '', 'subsets')) {
    const portItems = c.records(subset, path, 'ports');
    const named = portItems.map((p) => ({ name: c.str(p.item, p.path, 'name') ?? '', path: p.path }));
    checkPortNames(c, named, 'an Endpoints subset');
    const ports: EndpointSlicePort[] = portItems.map(({ item, path: pp }, i) => ({
      name: named[i]?.name ?? '',
      protocol: readProtocol(c, item, pp),
      port: readPortNumber(c, item, pp, 'port'),
    }));
    const portKey = ports
      .map((p) => `${p.name}/${p.protocol}/${p.port}`)
      .sort()
      .join(',');

    const ready = c.records(subset, path, 'addresses');
    const notReady = c.records(subset, path, 'notReadyAddresses');
    if (ready.length === 0 && notReady.length === 0) {
      c.fail(PROBLEM.REQUIRED, path, 'must specify `addresses` or `notReadyAddresses`');
    }
    let added = 0;
    let skipped = 0;
    for (const [list, isReady] of [[ready, true], [notReady, false]] as const) {
      for (const { item, path: ap } of list) {
        const ip = c.str(item, ap, 'ip');
        const nodeName = c.str(item, ap, 'nodeName');
        const hostname = c.str(item, ap, 'hostname');
        if (nodeName !== undefined && !isDNS1123Subdomain(nodeName)) {
          c.fail(PROBLEM.INVALID_NAME, child(ap, 'nodeName'), `must be ${DNS1123_SUBDOMAIN.description}, got ${q(nodeName)}`);
        }
        if (hostname !== undefined && hostname !== '' && !isDNS1123Label(hostname)) {
          c.fail(PROBLEM.INVALID_NAME, child(ap, 'hostname'), `must be ${DNS1123_LABEL.description}, got ${q(hostname)}`);
        }
        if (ip === undefined || ip === '') {
          if (item.ip === undefined || item.ip === null || item.ip === '') c.fail(PROBLEM.REQUIRED, child(ap, 'ip'), 'required: the endpoint IP address');
          continue;
        }
        const family = ipFamily(ip);
        if (family === undefined) {
          c.fail(PROBLEM.INVALID_IP, child(ap, 'ip'), `${q(ip)} is not a valid IP address`);
          continue;
        }
        const why = specialIPReason(ip);
        if (why !== undefined) {
          c.fail(PROBLEM.INVALID_IP, child(ap, 'ip'), `${q(ip)} ${why}`);
          continue;
        }
        if (added >= MAX_ENDPOINTS_PER_SUBSET) {
          skipped++;
          continue;
        }
        const key = `${family}|${portKey}`;
        let group = groups.get(key);
        if (!group) {
          group = { addressType: family, portKey, ports, endpoints: [], seen: new Set(), firstWhere: c.where(path) };
          groups.set(key, group);
        }
        const endpoint: SliceEndpoint = {
          addresses: [ip],
          conditions: endpointConditions(isReady, isReady, false),
          ...(nodeName !== undefined && nodeName !== '' ? { nodeName } : {}),
          ...(hostname !== undefined && hostname !== '' ? { hostname } : {}),
        };
        const identity = JSON.stringify([ip, isReady, nodeName ?? '', hostname ?? '']);
        if (group.seen.has(identity)) continue;
        if (group.endpoints.length >= MAX_ENDPOINTS_PER_SUBSET) {
          skipped++;
          continue;
        }
        group.seen.add(identity);
        group.endpoints.push(endpoint);
        added++;
      }
    }
    if (skipped > 0) {
      c.warn(PROBLEM.MIRROR_TRUNCATED, path, `at most ${MAX_ENDPOINTS_PER_SUBSET} addresses per subset are mirrored into an EndpointSlice; ${skipped} skipped`);
    }
  }

  const skip = meta.labels[SKIP_MIRROR_LABEL] === 'true' || meta.annotations[LEADER_ELECTION_ANNOTATION] !== undefined;
  return c.result((): readonly EndpointSliceObject[] => {
    if (skip) return [];
    const labels: Record<string, string> = { ...meta.labels, [SERVICE_NAME_LABEL]: meta.name, [MANAGED_BY_LABEL]: MIRRORING_CONTROLLER_NAME };
    const annotations: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta.annotations)) {
      if (k !== LAST_CHANGE_TRIGGER_TIME_ANNOTATION && k !== LAST_APPLIED_ANNOTATION) annotations[k] = v;
    }
    const used = new Set<string>();
    const slices: EndpointSliceObject[] = [];
    for (const g of groups.values()) {
      let name = mirroredSliceName(meta.name, `${g.addressType}|${g.portKey}`);
      for (let salt = 1; used.has(name); salt++) name = mirroredSliceName(meta.name, `${g.addressType}|${g.portKey}|${salt}`);
      used.add(name);
      slices.push({
        kind: 'EndpointSlice',
        id: namespacedName(meta.namespace, name),
        namespace: meta.namespace,
        name,
        serviceName: meta.name,
        labels,
        annotations,
        addressType: g.addressType,
        ports: g.ports,
        endpoints: g.endpoints,
        origin: ctx.origin,
      });
    }
    return slices;
  });
}

// ---------------------------------------------------------------------------------------------
// Node (v1)

export function convertNode(raw: unknown, ctx: ConvertContext): ConvertResult<NodeObject> {
  const c = new Checker(ctx);
  if (!isRecord(raw)) {
    c.fail(PROBLEM.NOT_AN_OBJECT, '', `a Node must be a mapping, got ${describe(raw)}`);
    return c.failed();
  }
  checkTypeMeta(c, raw, 'Node', 'v1');
  const meta = readMeta(c, raw, false, DNS1123_SUBDOMAIN);
  const spec = c.rec(raw, '', 'spec') ?? {};
  const podCIDRs: string[] = [];
  const podCIDR = c.str(spec, 'spec', 'podCIDR');
  const listed = c.strings(spec, 'spec', 'podCIDRs');
  for (const { value, path } of listed) {
    if (parseCIDR(value) === undefined) c.fail(PROBLEM.INVALID_CIDR, path, `${q(value)} is not a valid CIDR`);
    else podCIDRs.push(value);
  }
  if (podCIDR !== undefined && podCIDR !== '') {
    if (parseCIDR(podCIDR) === undefined) c.fail(PROBLEM.INVALID_CIDR, 'spec.podCIDR', `${q(podCIDR)} is not a valid CIDR`);
    else if (listed.length === 0) podCIDRs.push(podCIDR);
    else if (listed[0]?.value !== podCIDR) c.fail(PROBLEM.INVALID_VALUE, 'spec.podCIDRs[0]', `must match spec.podCIDR (${q(podCIDR)})`);
  }
  const rawMeta = isRecord(raw.metadata) ? raw.metadata : {};
  const deleting = typeof rawMeta.deletionTimestamp === 'string' && rawMeta.deletionTimestamp !== '';
  let toBeDeleted = false;
  for (const { item, path } of c.records(spec, 'spec', 'taints')) {
    const key = c.str(item, path, 'key');
    if (key === undefined || key === '') c.fail(PROBLEM.REQUIRED, child(path, 'key'), 'required: the taint key');
    else if (key === TO_BE_DELETED_TAINT) toBeDeleted = true;
  }
  const addresses: { type: string; address: string }[] = [];
  const status = c.rec(raw, '', 'status') ?? {};
  for (const { item, path } of c.records(status, 'status', 'addresses')) {
    const type = c.str(item, path, 'type') ?? '';
    const address = c.str(item, path, 'address') ?? '';
    if (type === '') c.fail(PROBLEM.REQUIRED, child(path, 'type'), 'required: the address type (InternalIP, ExternalIP, Hostname, ...)');
    if (address === '') c.fail(PROBLEM.REQUIRED, child(path, 'address'), 'required: the address');
    else if ((type === 'InternalIP' || type === 'ExternalIP') && !isIP(address)) {
      c.fail(PROBLEM.INVALID_IP, child(path, 'address'), `${q(address)} is not a valid IP address`);
    }
    addresses.push({ type, address });
  }
  return c.result((): NodeObject => ({
    kind: 'Node',
    name: meta.name,
    labels: meta.labels,
    addresses,
    podCIDRs,
    toBeDeleted,
    deleting,
    origin: ctx.origin,
  }));
}

// ---------------------------------------------------------------------------------------------
// Dispatch by kind

/** The kinds kproxy reads, with their only accepted apiVersion. */
export const KINDS: Readonly<Record<string, string>> = {
  Service: 'v1',
  Endpoints: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  Node: 'v1',
};

/** The identity of an object (or of the document that defines it) for diffing and duplicates. */
export function documentKey(kind: string, namespace: string, name: string): string {
  return flat`${kind}/${namespace}/${name}`;
}

export function objectKey(obj: ApiObject): string {
  return obj.kind === 'Node' ? documentKey('Node', '', obj.name) : documentKey(obj.kind, obj.namespace, obj.name);
}

export type ObjectOutcome =
  /** key: the document's identity (for Endpoints, the Endpoints object, not the slices). */
  | { readonly status: 'ok'; readonly key: string; readonly kind: string; readonly objects: readonly ApiObject[]; readonly warnings: readonly SourceProblem[] }
  /** key and kind are set when the document can still be identified. */
  | { readonly status: 'invalid'; readonly key: string | undefined; readonly kind: string | undefined; readonly problems: readonly SourceProblem[] }
  /** A kind kproxy does not read. */
  | { readonly status: 'ignored'; readonly problems: readonly SourceProblem[] };

/** Best-effort identity of a raw document, even an invalid one. */
function identify(raw: Raw, kind: string): string | undefined {
  const meta = raw.metadata;
  if (!isRecord(meta)) return undefined;
  const name = meta.name;
  if (typeof name !== 'string' || name === '') return undefined;
  if (kind === 'Node') return documentKey('Node', '', name);
  const ns = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : 'default';
  return documentKey(kind, ns, name);
}

/** Converts one raw document of any kind kproxy reads. */
export function convertObject(raw: unknown, ctx: ConvertContext): ObjectOutcome {
  const where = (field: string): string => {
    const prefix = ctx.path ?? '';
    const full = prefix === '' ? field : `${prefix}.${field}`;
    return full === '' ? ctx.where : `${ctx.where}, ${full}`;
  };
  if (!isRecord(raw)) {
    return { status: 'invalid', key: undefined, kind: undefined, problems: [
      { code: PROBLEM.NOT_AN_OBJECT, where: where(''), message: `a manifest document must be a mapping with apiVersion and kind, got ${describe(raw)}` },
    ] };
  }
  const kind = raw.kind;
  const apiVersion = raw.apiVersion;
  if (typeof kind !== 'string' || kind === '') {
    return { status: 'invalid', key: undefined, kind: undefined, problems: [
      { code: PROBLEM.MISSING_KIND, where: where('kind'), message: kind === undefined || kind === null ? 'required: every object needs a kind' : `must be a string, got ${describe(kind)}` },
    ] };
  }
  if (kind.endsWith('List')) {
    return { status: 'invalid', key: undefined, kind: undefined, problems: [
      { code: PROBLEM.FIELD_TYPE, where: where('items'), message: `a ${kind} needs an items list, got ${describe(raw.items)}` },
    ] };
  }
  const expectedVersion = KINDS[kind];
  if (expectedVersion === undefined) {
    const av = typeof apiVersion === 'string' ? ` (${apiVersion})` : '';
    return { status: 'ignored', problems: [
      { code: PROBLEM.UNKNOWN_KIND, where: where('kind'), message: `kind ${q(kind)}${av} is not one kproxy reads (${Object.keys(KINDS).join(', ')}); ignored` },
    ] };
  }
  const key = identify(raw, kind);
  if (apiVersion !== expectedVersion) {
    return { status: 'invalid', key, kind, problems: [
      { code: PROBLEM.API_VERSION, where: where('apiVersion'), message: typeof apiVersion === 'string' && apiVersion !== ''
        ? `${kind} must have apiVersion ${q(expectedVersion)}, got ${q(apiVersion)}`
        : `required: ${kind} needs apiVersion ${q(expectedVersion)}` },
    ] };
  }
  const done = <T>(r: ConvertResult<T>, list: (o: T) => readonly ApiObject[]): ObjectOutcome => {
    if (!r.ok) return { status: 'invalid', key, kind, problems: r.problems };
    return { status: 'ok', key: key ?? '', kind, objects: list(r.object), warnings: r.warnings };
  };
  switch (kind) {
    case 'Service': return done(convertService(raw, ctx), (o) => [o]);
    case 'EndpointSlice': return done(convertEndpointSlice(raw, ctx), (o) => [o]);
    case 'Endpoints': return done(convertEndpoints(raw, ctx), (o) => o);
    default: return done(convertNode(raw, ctx), (o) => [o]);
  }
}
