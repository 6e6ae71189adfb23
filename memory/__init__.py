"""Agent memory: embedders, FAISS-backed stores, persistence and the shared embedding cache. Depends on nothing of ours.

- `memory.embedders.LocalEncoder`: all-MiniLM-L6-v2, offline, batched.
- `memory.cache.EmbeddingCache`: wraps any Embedder; one embedding per distinct text; concurrent misses batched; counters.
- `memory.store.MemoryStore`: FAISS (flat | hnsw | ivf), supersede with history, thread-safe, `state_dict` /
  `from_state_dict` (written and read by `memory.store_files`), atomic save/load.
- `memory.snapshot.save_all` / `load_all`: all agents' stores as one atomic unit.
- `memory.priors`: the shipped prior set, HH-RLHF-style loader, `seed(population, n_agents, per_agent, seed)`.
- `memory.seeding.fill_stores`: add priors to stores with one batched embedding call.
- `memory.atomic`: crash-safe writes (a file, a JSON file, a folder, a versioned folder) for the whole project.

The `embedder` / `memory` config nodes are turned into these objects by `environment.assemble`.
"""
