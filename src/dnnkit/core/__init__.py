"""Shared layers of dnnkit: validation, seeding, devices, hooks, data, models, training,
checkpoints, the experiment registry, reports and progress bars. No paper logic lives here."""
