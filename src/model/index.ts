// The shared words of agentvm: resources, addresses, actions, effects, reasons, changes, drift, host paths and the
// canonical JSON that fingerprints them. A leaf: it imports nothing of the project (the layer rule in
// eslint.config.js enforces it), so every layer — engine, providers, state, views — can speak it.

export * from './resources.js';
export * from './canonical-json.js';
export * from './host-paths.js';
