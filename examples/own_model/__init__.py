"""The own-model walkthrough: ``python -m examples.own_model.walkthrough --out OUTDIR`` (README.md beside it)."""
