export * from './diagnostic.js';
export * from './errors.js';
export * from './exit-codes.js';
