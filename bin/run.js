#!/usr/bin/env node
// The agentvm entry point. Kept tiny: oclif reads oclif.manifest.json and imports only the command that runs.
import { execute } from '@oclif/core';

await execute({ dir: import.meta.url });
