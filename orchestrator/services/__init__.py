"""The orchestrator's logic: jobs and their stages, the queue, auth, webhooks and the Triton gateway."""
