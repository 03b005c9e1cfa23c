// Lazy loading of the Sigstore libraries (@sigstore/verify, @sigstore/bundle, @sigstore/protobuf-specs): about
// 45 ms of imports that only signature verification needs, kept off the CLI's start-up path. Loaded once.

export interface SigstoreLib {
  verify: typeof import('@sigstore/verify');
  bundle: typeof import('@sigstore/bundle');
  specs: typeof import('@sigstore/protobuf-specs');
}

let loading: Promise<SigstoreLib> | undefined;

export function loadSigstore(): Promise<SigstoreLib> {
  loading ??= Promise.all([
    import('@sigstore/verify'),
    import('@sigstore/bundle'),
    import('@sigstore/protobuf-specs'),
  ]).then(
    ([verify, bundle, specs]) => ({ verify, bundle, specs }),
    (err: unknown) => {
      loading = undefined;
      throw err;
    },
  );
  return loading;
}
