/** IPVS render-test fixtures: the shared upstream test world (test/helpers/upstream-world.ts) with IPVS options. */
import type { IpvsRenderOptions } from '../../../src/backends/ipvs/model.js';
import { renderIpvs } from '../../../src/backends/ipvs/render.js';
import { serializeDryRun } from '../../../src/backends/ipvs/serialize.js';
import { BASE_OPTS, snapshot, type Obj } from '../../helpers/upstream-world.js';

export { NODE, overall, port, snapshot } from '../../helpers/upstream-world.js';

/** kproxy's defaults: rr, --random-fully. */
export const OPTS: IpvsRenderOptions = { ...BASE_OPTS, scheduler: 'rr' };

export function text(objects: readonly Obj[], opts: IpvsRenderOptions = OPTS): string {
  return serializeDryRun(renderIpvs(snapshot(objects), opts));
}
