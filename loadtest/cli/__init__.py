"""scalecheck's command lines: ``scalecheck`` (check, options, run, and the analysis and
stack commands)."""
