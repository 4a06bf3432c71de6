"""The sampler core both families share: the request (:mod:`.request`), the runner protocol, network calls,
cancellation and length buckets (:mod:`.protocol`), and the family registry the Triton ``sampler`` model dispatches
through (:mod:`.registry`)."""
