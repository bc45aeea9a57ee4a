/**
 * Canonical identities. One constructor per identity; maps are keyed by these, never by
 * strings built at call sites.
 */
import { flat } from './text.js';

declare const servicePortNameBrand: unique symbol;
declare const namespacedNameBrand: unique symbol;

/** "namespace/name" */
export type NamespacedName = string & { readonly [namespacedNameBrand]: true };
/** Upstream's ServicePortName.String(): "namespace/name:port" ("namespace/name" for an unnamed port). */
export type ServicePortName = string & { readonly [servicePortNameBrand]: true };

export function namespacedName(namespace: string, name: string): NamespacedName {
  return flat`${namespace}/${name}` as NamespacedName;
}

export function servicePortName(svc: NamespacedName, portName: string): ServicePortName {
  return (portName === '' ? svc : flat`${svc}:${portName}`) as ServicePortName;
}

/** Splits a ServicePortName back into its parts. */
export function parseServicePortName(spn: ServicePortName): { namespace: string; name: string; port: string } {
  const slash = spn.indexOf('/');
  const rest = spn.slice(slash + 1);
  const colon = rest.indexOf(':');
  return {
    namespace: spn.slice(0, slash),
    name: colon < 0 ? rest : rest.slice(0, colon),
    port: colon < 0 ? '' : rest.slice(colon + 1),
  };
}
