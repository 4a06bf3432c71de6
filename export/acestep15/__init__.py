"""ACE-Step 1.5 (diffusers classes): checkpoints, presets, export wrappers and contracts."""
