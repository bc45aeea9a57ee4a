/** iptables render-test fixtures: the shared upstream test world (test/helpers/upstream-world.ts) with iptables options. */
import type { IptablesRenderOptions } from '../../../src/backends/iptables/model.js';
import { renderIptables } from '../../../src/backends/iptables/render.js';
import { serializeFull } from '../../../src/backends/iptables/serialize.js';
import { BASE_OPTS, snapshot, type Obj } from '../../helpers/upstream-world.js';

export { NODE, overall, port, snapshot } from '../../helpers/upstream-world.js';

/** kproxy's defaults: localhost NodePorts off, --random-fully, no nfacct. */
export const OPTS: IptablesRenderOptions = { ...BASE_OPTS, localhostNodePorts: false };

/** The settings of upstream's NewFakeProxier (localhost NodePorts on, nfacct counters present, no --random-fully). */
export const UPSTREAM_FAKE_OPTS: IptablesRenderOptions = { ...OPTS, localhostNodePorts: true, nfacct: true, randomFully: false };

export function text(objects: readonly Obj[], opts: IptablesRenderOptions = OPTS): string {
  return serializeFull(renderIptables(snapshot(objects), opts)).text;
}
