"""Multirun sweeps: ``trials.py`` reads one trial's run dir back (status, best value, overrides,
exports), ``results.py`` ranks a sweep's trials and writes its table and CSV, and
``trial_process.py`` runs one trial in a process of its own (for launchers that reuse workers)."""
