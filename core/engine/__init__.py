"""The machine-learning core of Mnemo: continual personalization with DC-score consolidation.

No FastAPI, Celery or SQL in here; usable as a library:

* ``backbone.load_backbone("toy" | "tiny" | <SD folder or cached hub id>)``
* ``task.run_task(backbone=, state=, concept=, class_word=, images=, method=, config=)`` -> new state
* ``generate.generate(backbone=, state=, prompt=, n=, steps=, guidance_scale=, seed=)``
* ``state.save_version`` / ``state.load_state`` — one directory per task, the lineage chain
* ``methods.METHODS`` — the registry; ``config.PRESETS`` — App. H and scaled-down presets
* ``losses`` — Eq. 1–6 of the paper, each a small pure function
"""
