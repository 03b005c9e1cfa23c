// The AgentvmError a promise rejects with; fails the test when it resolves, or rejects with anything else.

import { expect } from 'vitest';
import { AgentvmError } from '../../src/diagnostics/index.js';

export async function rejection(promise: Promise<unknown>): Promise<AgentvmError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AgentvmError);
    return error as AgentvmError;
  }
  throw new Error('expected a rejection');
}
