/**
 * Errors crossing a worker boundary as plain data, so a task's RangeError is a RangeError
 * in the caller on every runtime (structured cloning of errors differs between them).
 */

/** A task error as plain data. */
export interface TaskErrorData {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
}

const BUILT_IN: Record<string, ErrorConstructor> = {
  Error,
  RangeError,
  TypeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** Turns anything thrown into {@link TaskErrorData}. */
export function encodeTaskError(error: unknown): TaskErrorData {
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack };
  return { name: "Error", message: String(error) };
}

/** Rebuilds the error: the same built-in class where there is one, else an Error with the original name. */
export function decodeTaskError(data: TaskErrorData): Error {
  const error = new (BUILT_IN[data.name] ?? Error)(data.message);
  if (!(data.name in BUILT_IN)) error.name = data.name;
  if (data.stack) error.stack = data.stack;
  return error;
}
