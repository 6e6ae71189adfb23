"""One small file per backend behind the async `ChatBackend` interface, plus wrappers that stack around any backend."""
