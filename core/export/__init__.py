"""Export a user's adapter version for other tools (docs/export.md): a zip with a diffusers LoRA,
a kohya LoRA, one textual-inversion file per token and a JSON card.

Pure Python on purpose: the API process builds the zip, and it imports no torch or numpy
(docs/architecture.md, "Layers"). Tensors are handled as their safetensors bytes
(``core.export.safetensors_io``); the only arithmetic, a scale and an identity matrix, is done
on those bytes (``core.export.tensors``).

* ``source.load_export_source`` — the version's lineage from the database and the store, verified;
* ``merge.single_lora`` — the method's state as one LoRA (or ``ExportRefusedError``);
* ``diffusers_keys`` / ``kohya_keys`` / ``textual_inversion`` — the three file formats;
* ``card`` and ``bundle.build_export`` — the card and the zip.
"""
