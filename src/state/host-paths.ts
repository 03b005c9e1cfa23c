// The guard that keeps a host name from ever becoming anything but a single, safe file-name component. The layout
// itself (hostPaths) is shared vocabulary and lives in src/model.

import { isHostName } from '../model/host-paths.js';
import { AgentvmError } from '../diagnostics/index.js';

/** Host names become state file names: anything but a DNS label is refused before it can touch a path. */
export function assertHostName(host: string): void {
  if (!isHostName(host)) {
    throw new AgentvmError('state.invalid-host', `${JSON.stringify(host)} is not a valid host name.`, {
      detail:
        'Host names are DNS labels: lowercase letters, digits and dashes, starting with a letter, at most 63 characters (the name of hosts/<host>.yaml).',
    });
  }
}
