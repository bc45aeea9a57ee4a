/**
 * What sources emit. Both the Kubernetes source and the manifest source produce exactly these;
 * backends cannot tell them apart.
 */
import type { EndpointSliceObject, NodeObject, ServiceObject } from './objects.js';

export type ObjectEvent<T> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly previous: T; readonly object: T }
  | { readonly type: 'delete'; readonly object: T };

export type SourceEvent =
  | ({ readonly kind: 'Service' } & ObjectEvent<ServiceObject>)
  | ({ readonly kind: 'EndpointSlice' } & ObjectEvent<EndpointSliceObject>)
  | ({ readonly kind: 'Node' } & ObjectEvent<NodeObject>)
  /** The source has delivered its complete initial state. */
  | { readonly kind: 'synced'; readonly source: string };

/** A problem a source found in its input: reported, never fatal. */
export interface SourceProblem {
  readonly code: string;
  /** Where: "path/to/file.yaml document 2, spec.ports[0].port" */
  readonly where: string;
  readonly message: string;
}

export type EventSink = (event: SourceEvent) => void;

export interface Source {
  readonly name: string;
  /** Starts delivering events to the sink; emits 'synced' once its initial state is delivered. */
  start(sink: EventSink): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}
