"""Agent memory: embedders, FAISS-backed stores, persistence and the shared embedding cache. Depends on nothing of ours.

- `memory.embedders.LocalEncoder`: all-MiniLM-L6-v2, offline, batched.
- `memory.cache.EmbeddingCache`: wraps any Embedder; one embedding per distinct text; concurrent misses batched; counters.
- `memory.store.MemoryStore`: FAISS (flat | hnsw | ivf), supersede with history, thread-safe, atomic save/load.
- `memory.snapshot.save_all` / `load_all`: all agents' stores as one atomic unit.
- `memory.priors`: the shipped prior set, HH-RLHF-style loader, `seed(population, n_agents, per_agent, seed)`.
- `memory.seeding.fill_stores`: add priors to stores with one batched embedding call.
- `memory.factory`: build the embedder and stores from the `embedder` / `memory` config nodes.
"""
