"""Fleet replay: ``replay`` over many bags as Ray tasks, one bag a task, with one summary.

Only ``fleet.ray_runner`` imports Ray (lazily), so the rest of the package imports without it.
"""
