"""What a study is: the knobs and a Candidate, the search space (search_spaces/), the workload (prompts/),
the settings, the machine filter, and the records exchanged between layers (Measurement, Preset). Nothing
here imports torch."""
