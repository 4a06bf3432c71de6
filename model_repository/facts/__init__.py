"""Facts every side of Tritone shares, with no heavy dependency (no torch, no numpy, no Triton).

``export`` (which writes artifacts), the serving code under ``model_repository`` (which reads them) and the
``orchestrator`` (which validates API requests before they reach Triton) import these modules and nothing of each
other:

- :mod:`model_repository.facts.families` — the model families, their task types, limits and defaults;
- :mod:`model_repository.facts.manifest` — the sampler manifest (``pipeline.json``), one typed class with
  ``write`` and ``read``;
- :mod:`model_repository.facts.stems` — the stem sets, the separator's limits and the stems model names.
"""
