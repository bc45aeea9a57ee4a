/**
 * The IPVS schedulers, each reproducing net/netfilter/ipvs/ip_vs_<name>.c. Pure and
 * deterministic: no node: modules, no randomness, time only through the injected NowFn.
 */
import type { SchedulerName } from '../core/annotations.js';
import { DestinationHashingScheduler } from './dh.js';
import { LocalityLeastConnectionScheduler } from './lblc.js';
import { LocalityLeastConnectionReplicationScheduler } from './lblcr.js';
import { LeastConnectionScheduler } from './lc.js';
import { MaglevHashingScheduler } from './mh.js';
import { NeverQueueScheduler } from './nq.js';
import { RoundRobinScheduler } from './rr.js';
import type { NowFn, Scheduler } from './scheduler.js';
import { ShortestExpectedDelayScheduler } from './sed.js';
import { SourceHashingScheduler } from './sh.js';
import { WeightedLeastConnectionScheduler } from './wlc.js';
import { WeightedRoundRobinScheduler } from './wrr.js';

export type { NowFn, SchedContext, SchedDest, Scheduler } from './scheduler.js';
export { DestinationHashingScheduler, IP_VS_DH_TAB_SIZE, dhHashKey } from './dh.js';
export { LocalityLeastConnectionScheduler, type LblcOptions } from './lblc.js';
export { LocalityLeastConnectionReplicationScheduler, type LblcrOptions } from './lblcr.js';
export { LeastConnectionScheduler } from './lc.js';
export { MaglevHashingScheduler, MH_HASH1, MH_HASH2, MH_PRIMES, DEFAULT_MH_TAB_INDEX, mhHashKey, type MhOptions } from './mh.js';
export { NeverQueueScheduler } from './nq.js';
export { RoundRobinScheduler } from './rr.js';
export { ShortestExpectedDelayScheduler } from './sed.js';
export { SourceHashingScheduler, IP_VS_SH_TAB_SIZE, shHashKey } from './sh.js';
export { WeightedLeastConnectionScheduler, weightedLeastConnection } from './wlc.js';
export { WeightedRoundRobinScheduler, type WrrOptions } from './wrr.js';
export { SipKey, siphash24, hsiphash, hsiphashU32, halfSiphash13 } from './siphash.js';
export { hash32, addrFold, connOverheadU32, kernelListOrder } from './common.js';
export {
  CHECK_EXPIRE_INTERVAL_MS, COUNT_FOR_FULL_EXPIRATION, DEFAULT_EXPIRATION_MS, ENTRY_TIMEOUT_MS, LOCALITY_MAX_SIZE,
} from './locality.js';

export interface SchedulerOptions {
  /** Monotonic milliseconds (lblc/lblcr expiry). */
  readonly now: NowFn;
}

/** A fresh scheduler, as the kernel's init_service on a service with no destinations yet. */
export function createScheduler(name: SchedulerName, options: SchedulerOptions): Scheduler {
  switch (name) {
    case 'rr': return new RoundRobinScheduler();
    case 'wrr': return new WeightedRoundRobinScheduler();
    case 'lc': return new LeastConnectionScheduler();
    case 'wlc': return new WeightedLeastConnectionScheduler();
    case 'sed': return new ShortestExpectedDelayScheduler();
    case 'nq': return new NeverQueueScheduler();
    case 'dh': return new DestinationHashingScheduler();
    case 'sh': return new SourceHashingScheduler();
    case 'lblc': return new LocalityLeastConnectionScheduler({ now: options.now });
    case 'lblcr': return new LocalityLeastConnectionReplicationScheduler({ now: options.now });
    case 'mh': return new MaglevHashingScheduler();
  }
}
