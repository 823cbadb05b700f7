"""The model registry: versions on disk, the production pointer, the promotion history, and
the check that finds what a crash or a hand edit left behind."""
