/**
 * Every error kproxy reports carries a stable code (KP_ERR_<AREA>_<WHAT>), a message that
 * says what and where, and the underlying cause when there is one.
 */
export class KproxyError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KproxyError';
    this.code = code;
  }
}

export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(x)}`);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
