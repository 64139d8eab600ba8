"""Training: the trainer, its hooks, stop signals, launching one or many processes, the
start-up checks, and the LazyConfig route."""
