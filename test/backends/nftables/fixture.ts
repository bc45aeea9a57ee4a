/** nftables render-test fixtures: the shared upstream test world (test/helpers/upstream-world.ts) with nftables options. */
import type { NftablesRenderOptions } from '../../../src/backends/nftables/model.js';
import { renderNftables } from '../../../src/backends/nftables/render.js';
import { serializeFull } from '../../../src/backends/nftables/serialize.js';
import { BASE_OPTS, snapshot, type Obj } from '../../helpers/upstream-world.js';

export { NODE, builder, overall, port, snapshot, type Obj } from '../../helpers/upstream-world.js';

export const OPTS: NftablesRenderOptions = BASE_OPTS;

export function text(objects: readonly Obj[], opts: NftablesRenderOptions = OPTS): string {
  return serializeFull(renderNftables(snapshot(objects), opts)).text;
}
