"""Analysis of sweeps: reads run directories (docs/run-format.md) or W&B, never training code.

Entry points: ``analysis.report.build_report`` (everything, written to a directory),
``analysis.sources.load_sources`` + ``analysis.pipeline.analyze`` (the tables only), and
``harness analyze`` / ``python -m analysis`` (``analysis.cli``).
"""
