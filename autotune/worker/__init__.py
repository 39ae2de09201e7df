"""The trial worker: builds, warms, measures and compares one Candidate in a fresh process.

`launcher.launch(job)` starts `python -m autotune.worker JOB RESULT` and waits for it; the child writes a
Measurement (or a failure with its traceback) to RESULT and never raises across the process boundary.
"""
