"""The Optuna orchestration: a study over Candidates, each measured in a fresh worker process. `loop.Tuner`
runs it, its jobs each in a module of their own (seeds and covering trials, the prescreen, reuse, launching,
records, guards, confirmation and export), and `coordination` says how it shares its study with other
workers. Nothing here imports torch; the orchestrator never initialises CUDA."""
