/**
 * nftables mode's names, as upstream kube-proxy spells them (pkg/proxy/nftables): table
 * `kube-proxy`, fixed chain/set/map names, and per-service-port chains
 * `<prefix><HASH8>-<ns>/<svc>/<proto>/<portName>` (HASH8: the first 8 characters of the
 * upper-case RFC 4648 base32 of sha256 of the text after the hash; not lower-cased). Pure.
 */
import { namespacedName, parseServicePortName, servicePortName, type ServicePortName } from '../../core/ids.js';
import { flat } from '../../core/text.js';
import { hashedName } from '../iptables/hash.js';

export const TABLE = 'kube-proxy';

// Base chains.
export const FILTER_PREROUTING = 'filter-prerouting';
export const FILTER_INPUT = 'filter-input';
export const FILTER_FORWARD = 'filter-forward';
export const FILTER_OUTPUT = 'filter-output';
export const FILTER_OUTPUT_POST_DNAT = 'filter-output-post-dnat';
export const NAT_PREROUTING = 'nat-prerouting';
export const NAT_OUTPUT = 'nat-output';
export const NAT_POSTROUTING = 'nat-postrouting';

// Regular top-level chains.
export const SERVICES_CHAIN = 'services';
export const SERVICE_ENDPOINTS_CHECK = 'service-endpoints-check';
export const NODEPORT_ENDPOINTS_CHECK = 'nodeport-endpoints-check';
export const REJECT_CHAIN = 'reject-chain';
export const CLUSTER_IPS_CHECK = 'cluster-ips-check';
export const FIREWALL_CHECK = 'firewall-check';
export const MARK_MASQ_CHAIN = 'mark-for-masquerade';
export const MASQUERADING_CHAIN = 'masquerading';

// Sets and maps.
export const CLUSTER_IPS_SET = 'cluster-ips';
export const NODEPORT_IPS_SET = 'nodeport-ips';
export const SERVICE_IPS_MAP = 'service-ips';
export const SERVICE_NODEPORTS_MAP = 'service-nodeports';
export const NO_ENDPOINT_SERVICES_MAP = 'no-endpoint-services';
export const NO_ENDPOINT_NODEPORTS_MAP = 'no-endpoint-nodeports';
export const FIREWALL_IPS_MAP = 'firewall-ips';

export const CLUSTER_PREFIX = 'service-';
export const LOCAL_PREFIX = 'local-';
export const EXTERNAL_PREFIX = 'external-';
export const FIREWALL_PREFIX = 'firewall-';
export const ENDPOINT_PREFIX = 'endpoint-';
export const AFFINITY_PREFIX = 'affinity-';

/** nft's NFT_NAME_MAXLEN - 1 (knftables.NameLengthMax). */
export const NAME_LENGTH_MAX = 256;
const PREFIX_LENGTH_MAX = 16;
const BASE_LENGTH_MAX = NAME_LENGTH_MAX - PREFIX_LENGTH_MAX;

/** Upstream's hashAndTruncate: "<HASH8>-<name>", cut to 240 characters ending in "..." if longer. */
export function hashAndTruncate(name: string): string {
  const out = hashedName('', name, 8, `-${name}`);
  return out.length > BASE_LENGTH_MAX ? flat`${out.slice(0, BASE_LENGTH_MAX - 3)}...` : out;
}

/** "HASH-ns/svc/proto/portName", e.g. "ULMVA6XW-ns1/svc1/tcp/p80". `protocol` is lower-cased. */
export function servicePortChainNameBase(spn: ServicePortName, protocol: string): string {
  const p = parseServicePortName(spn);
  return hashAndTruncate(`${p.namespace}/${p.name}/${protocol.toLowerCase()}/${p.port}`);
}

/**
 * "HASH-ns/svc/proto/portName__ip/port" for an endpoint "ip:port" ("[ip]:port" for IPv6, whose
 * colons become dots, as chain names cannot hold colons), e.g. "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80".
 */
export function endpointChainNameBase(spn: ServicePortName, protocol: string, endpoint: string): string {
  const p = parseServicePortName(spn);
  const cut = endpoint.lastIndexOf(':');
  let ip = endpoint.slice(0, cut);
  const port = endpoint.slice(cut + 1);
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  ip = ip.replaceAll(':', '.');
  return hashAndTruncate(`${p.namespace}/${p.name}/${protocol.toLowerCase()}/${p.port}__${ip}/${port}`);
}

export interface ServiceChainNames {
  readonly cluster: string;
  readonly local: string;
  readonly external: string;
  readonly firewall: string;
}

export function serviceChainNames(spn: ServicePortName, protocol: string): ServiceChainNames {
  const base = servicePortChainNameBase(spn, protocol);
  return { cluster: flat`${CLUSTER_PREFIX}${base}`, local: flat`${LOCAL_PREFIX}${base}`, external: flat`${EXTERNAL_PREFIX}${base}`, firewall: flat`${FIREWALL_PREFIX}${base}` };
}

export function endpointNames(spn: ServicePortName, protocol: string, endpoint: string): { readonly chain: string; readonly affinitySet: string } {
  const base = endpointChainNameBase(spn, protocol, endpoint);
  return { chain: flat`${ENDPOINT_PREFIX}${base}`, affinitySet: flat`${AFFINITY_PREFIX}${base}` };
}

/** Per-service-port chains always contain "/"; the fixed chains never do (upstream's isServiceChainName). */
export function isServiceChainName(chain: string): boolean {
  return chain.includes('/');
}

export function isAffinitySetName(set: string): boolean {
  return set.startsWith(AFFINITY_PREFIX);
}

/**
 * The service port a per-service chain or affinity set name spells out
 * (`<prefix><HASH8>-<ns>/<svc>/<proto>/<port>[__<endpoint>]`), or undefined for a name of
 * another form. A name cut short, or made of names holding `/` or `_`, may spell out another
 * port: the renderer indexes a port's objects by this only when spellsServicePort says its
 * names give it back (see PortIndexed).
 */
export function servicePortOfName(name: string): ServicePortName | undefined {
  const dash = name.indexOf('-');
  const start = dash + 10; // past "<prefix>-", the 8-character hash and its "-"
  if (dash < 0 || name.charCodeAt(start - 1) !== 45 /* - */) return undefined;
  const cut = name.indexOf('__', start);
  const parts = name.slice(start, cut < 0 ? name.length : cut).split('/');
  if (parts.length !== 4) return undefined;
  const [ns, svc, , port] = parts as [string, string, string, string];
  return servicePortName(namespacedName(ns, svc), port);
}

/** The longest `ns/svc/proto/port` whose names are never cut inside it (nor right after it). */
const PORT_TEXT_MAX = BASE_LENGTH_MAX - 3 - 9 - 2;

/**
 * Whether servicePortOfName gives this port back for every chain and affinity set name of it:
 * its namespace, service and port names hold no `/` or `_`, and its text is short enough that
 * hashAndTruncate never cuts into it. Always so for the names the sources accept (DNS labels,
 * 148 characters at most); a test checks it against the names themselves.
 */
export function spellsServicePort(spn: ServicePortName): boolean {
  const p = parseServicePortName(spn);
  const parts = `${p.namespace}${p.name}${p.port}`;
  return !/[/_]/.test(parts) && parts.length + '///sctp'.length <= PORT_TEXT_MAX;
}
